"""The window's Advanced > LoRA field reaches the engine as the job's loras, and is remembered."""

from __future__ import annotations

import json

import pytest

from engine.server.request import JobRequest, parse_params
from ui.settings_panel import SettingsPanel
from ui.settings_store import DesktopSettings, load_settings, save_settings


def test_loras_travel_from_advanced_to_the_job_and_back_from_the_file(qtbot, tmp_path):
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    settings = DesktopSettings()
    panel.set_settings(settings)
    assert "loras" not in settings.job_params()  # none unless given
    panel.loras.setText(" detail.safetensors:0.6 ; /loras/upscale.safetensors ")
    panel.update_settings(settings)
    params = settings.job_params()
    assert params["loras"] == ["detail.safetensors:0.6", "/loras/upscale.safetensors"]
    request = JobRequest.from_params(parse_params(json.dumps({**params, "format": "png"})))
    assert request.settings.loras == ("detail.safetensors:0.6", "/loras/upscale.safetensors")
    save_settings(settings, tmp_path)
    assert load_settings(tmp_path).loras == settings.loras


def test_the_window_reads_the_field_as_the_editors_do(qtbot):
    """Commas as in the Krita and GIMP fields (options.parse_loras), and a bad weight refused with its entry."""
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    settings = DesktopSettings()
    panel.loras.setText("detail.safetensors:0.6, /loras/upscale.safetensors")
    panel.update_settings(settings)
    assert settings.job_params()["loras"] == ["detail.safetensors:0.6", "/loras/upscale.safetensors"]
    panel.loras.setText("detail.safetensors:lots")
    panel.update_settings(settings)
    with pytest.raises(ValueError, match="LoRA weight in 'detail.safetensors:lots' is not a number"):
        settings.job_params()

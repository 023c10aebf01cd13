"""The window's Advanced > GPU memory choice reaches the engine as the job's memory mode."""

from __future__ import annotations

import json

import pytest

from engine.errors import InvalidInput
from engine.server.request import JobRequest, parse_params
from ui.settings_panel import MEMORY_ITEMS, SettingsPanel
from ui.settings_store import DesktopSettings, load_settings, save_settings


def test_memory_mode_travels_from_advanced_to_the_job_and_back_from_the_file(qtbot, tmp_path):
    panel = SettingsPanel()
    qtbot.addWidget(panel)
    settings = DesktopSettings()
    panel.set_settings(settings)
    assert panel.memory.currentData() is None  # the engine's own setting unless chosen
    assert "memory" not in settings.job_params()
    panel.memory.setCurrentIndex(panel.memory.findData("group-offload"))
    panel.update_settings(settings)
    params = settings.job_params()
    assert params["memory"] == "group-offload"
    request = JobRequest.from_params(parse_params(json.dumps({**params, "format": "png"})))
    assert request.memory == "group-offload"
    assert JobRequest.from_params(request.to_params()) == request
    save_settings(settings, tmp_path)
    assert load_settings(tmp_path).memory == "group-offload"


def test_every_choice_is_a_mode_the_engine_knows():
    from engine.settings import MEMORY_CHOICES

    assert {value for _, value, _ in MEMORY_ITEMS} - {None} == set(MEMORY_CHOICES)


def test_an_unknown_memory_mode_is_refused_in_one_line():
    with pytest.raises(InvalidInput, match="memory must be one of auto, gpu"):
        JobRequest.from_params({"format": "png", "memory": "turbo"})

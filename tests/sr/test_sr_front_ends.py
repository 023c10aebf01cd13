"""The "Upscale model" choice in the window (real Qt, offscreen) and the Krita and GIMP bridges' job params."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugin" / "krita"), str(ROOT / "plugin" / "gimp" / "uprez-upscale"), str(ROOT / "plugin")]

from uprez_client import options  # noqa: E402

LISTING = {"default": "builtin", "models": [
    {"id": "builtin", "name": "builtin", "kind": "builtin", "default": True},
    {"id": "/m/flux1-dev", "name": "flux1-dev", "kind": "diffusers"},
    {"id": "/sr/4x-UltraSharp.pth", "name": "4x-UltraSharp.pth", "kind": "sr"},
]}


def test_the_window_offers_sr_models_and_sr_then_refine_and_sends_both(qtbot):
    from ui.settings_panel import SettingsPanel
    from ui.settings_store import DesktopSettings

    panel = SettingsPanel()
    qtbot.addWidget(panel)
    panel.set_models(LISTING)
    labels = [panel.model.itemText(i) for i in range(panel.model.count())]
    assert "SR model: 4x-UltraSharp.pth (on its own)" in labels and "Flow model: flux1-dev" in labels
    panel.model.setCurrentIndex(labels.index("SR model 4x-UltraSharp.pth, then refine with flux1-dev"))
    settings = DesktopSettings()
    panel.update_settings(settings)
    params = settings.job_params()
    assert (params["model"], params["upsampler"]) == ("/m/flux1-dev", "/sr/4x-UltraSharp.pth")
    # Remembered and chosen again when the window next fills its list.
    again = SettingsPanel()
    qtbot.addWidget(again)
    again.set_models(LISTING)
    again.set_settings(settings)
    assert again.model.currentText() == "SR model 4x-UltraSharp.pth, then refine with flux1-dev"


def test_krita_form_turns_the_chosen_pair_into_model_and_upsampler():
    from uprez_krita import form

    key = options.choice_key("/m/flux1-dev", "/sr/4x-UltraSharp.pth")
    params = form.to_request(form.Choices(model=key)).params
    assert (params["model"], params["upsampler"]) == ("/m/flux1-dev", "/sr/4x-UltraSharp.pth")
    assert "upsampler" not in form.to_request(form.Choices(model="/sr/4x-UltraSharp.pth")).params


def test_gimp_settings_take_an_upsampler_argument():
    from uprez_gimp import settings

    chosen = settings.settings_from(2, "balanced", "builtin", upsampler=" 4x-UltraSharp ")
    assert chosen.params["upsampler"] == "4x-UltraSharp" and chosen.params["model"] == "builtin"
    assert "upsampler" not in settings.settings_from(2, "balanced").params

"""What the window remembers between runs: one JSON file in the config folder the engine and bridges share."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plugin.uprez_client.discovery import config_dir
from plugin.uprez_client.options import PRESETS, job_params, parse_loras

SETTINGS_FILE = "desktop.json"


def config_folder() -> Path:
    """$UPREZ_CONFIG_DIR, else the user's config folder for uprez: the client's `config_dir()`, as a Path."""
    return Path(config_dir())


@dataclass
class DesktopSettings:
    """The settings panel's values plus a few window habits. `None` = let the engine/model decide."""

    scale: float = 2.0
    preset: str = "balanced"
    model: str | None = None
    upsampler: str | None = None  # an SR model whose output the model refines; None = Lanczos
    seed: int = 0
    prompt: str = ""
    steps: int | None = None
    strength: float | None = None
    guidance: float | None = None
    tile_size: int | None = None
    memory: str | None = None  # the engine's memory mode for this window's jobs; None = the engine's setting
    loras: str = ""  # LoRAs for the flow model as typed, "NAME_OR_PATH[:WEIGHT]", comma-separated (parse_loras)
    live_preview: bool = True
    advanced_open: bool = False
    brush_size: int = 48
    feather: int = 8
    last_folder: str = ""

    def job_params(self) -> dict[str, Any]:
        """The engine params for a job (ValueError with a readable message for bad values)."""
        params = job_params(self.scale, self.preset, self.model, self.seed, self.prompt, steps=self.steps,
                            strength=self.strength, guidance=self.guidance, tile_size=self.tile_size,
                            upsampler=self.upsampler)
        if self.live_preview:
            params["preview_every"] = 1
        if self.memory is not None:
            params["memory"] = self.memory
        loras = parse_loras(self.loras)  # the bridges' own reading; older files' ";" still separates
        if loras:
            params["loras"] = loras
        return params

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesktopSettings:
        """Known keys of the right type only: a hand-edited or older file never stops the window opening."""
        values = {}
        for name, value in data.items():
            kinds = _FIELD_TYPES.get(name)
            if kinds is not None and type(value) in kinds:
                values[name] = value
        settings = cls(**values)
        if settings.preset not in PRESETS:
            settings.preset = cls.preset
        return settings


_NUMBER = (int, float)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "scale": _NUMBER, "preset": (str,), "model": (str, type(None)), "upsampler": (str, type(None)), "seed": (int,),
    "prompt": (str,),
    "steps": (int, type(None)), "strength": (*_NUMBER, type(None)), "guidance": (*_NUMBER, type(None)),
    "tile_size": (int, type(None)), "memory": (str, type(None)), "loras": (str,), "live_preview": (bool,),
    "advanced_open": (bool,),
    "brush_size": (int,),
    "feather": (int,), "last_folder": (str,),
}


def load_settings(folder: Path | None = None) -> DesktopSettings:
    path = (folder or config_folder()) / SETTINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DesktopSettings()
    return DesktopSettings.from_dict(data) if isinstance(data, dict) else DesktopSettings()


def save_settings(settings: DesktopSettings, folder: Path | None = None) -> None:
    """Atomic write; a read-only config folder only costs the memory of the settings, never an error box."""
    folder = folder or config_folder()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # the engine refuses a folder others may write
        fd, temp = tempfile.mkstemp(prefix=".desktop-", suffix=".json", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(settings), f, indent=1)
        os.replace(temp, folder / SETTINGS_FILE)

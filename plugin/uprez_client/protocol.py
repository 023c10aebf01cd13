"""The facts the engine, the installer, the window and both bridges must agree on, each written down once.

Standard library only and Python 3.8 syntax: the bridges import this from the copy an installer puts beside
them, the engine and the window as `plugin.uprez_client.protocol`.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Mapping

# -- the job ---------------------------------------------------------------------------------------------------
# Named trade-offs every front end offers; each model maps them to its own settings (FlowBackend.presets).
PRESETS = ("faithful", "balanced", "creative")
DEFAULT_PRESET = "balanced"
MAX_SCALE = 16.0  # beyond 16x the input carries too little to guide the model; refuse rather than hallucinate
MAX_SEED = 2**63 - 1  # the seed is a torch.Generator seed: a signed 64-bit integer
# Input pixels around a mask's bounding box that go to the model with it: the context it composes from. The
# bridges grow a selection's crop by the same margin so the engine sees what it would have cut itself.
MASK_CONTEXT = 64
# A LoRA's weight (job param `loras`, "PATH:WEIGHT") within ±this: past a few times its trained strength a LoRA
# only burns the image (FlowMapSR saw >2 overshoot).
LORA_WEIGHT_LIMIT = 4.0


def scale_problem(value: object, name: str = "scale") -> str | None:
    """What is wrong with a scale factor, in words a person can act on; None when it is fine. The one rule the
    settings, the server, the command line and the bridges' dialogs all apply."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        return f"{name} must be a finite number such as 2 or 1.5, got {value!r}"
    if value <= 1.0:
        return f"{name} must be more than 1 (this is an upscaler), got {value}"
    if value > MAX_SCALE:
        return f"{name} must be at most {MAX_SCALE:g}, got {value}; run the result again for more"
    return None


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def round_half_up(value: float) -> int:
    """The one rounding of sizes and positions: halves go up (Python's round() goes to even)."""
    return int(math.floor(value + 0.5))


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Final size of an upscale: each side times `scale`, rounded half up."""
    return round_half_up(width * scale), round_half_up(height * scale)


# -- files on the wire -----------------------------------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders

# -- where the engine is ---------------------------------------------------------------------------------------
DEFAULT_HOST = "127.0.0.1"  # loopback only: the engine is never reachable from the network by default
DEFAULT_PORT = 8742  # unassigned by IANA, below Linux's ephemeral range, clear of Gradio (7860) and Jupyter (8888)
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
APP_NAME = "uprez"
CONFIG_DIR_ENV = "UPREZ_CONFIG_DIR"
TOKEN_FILE = "token"  # in the config folder: the bearer token the engine created
ENGINE_FILE = "engine.json"  # in the config folder: a running engine's URL and pid
BRIDGE_FILE = "bridge.json"  # in the config folder: what the installer wrote for the bridges


def config_dir(platform: str | None = None, environ: Mapping[str, str] | None = None,
               home: str | None = None) -> str:
    """$UPREZ_CONFIG_DIR, else %APPDATA%\\uprez, ~/Library/Application Support/uprez or $XDG_CONFIG_HOME/uprez.

    platformdirs' `user_config_dir("uprez", appauthor=False, roaming=True)` written with the standard library,
    because the editors bundle their own Python without platformdirs. `platform` is sys.platform's value;
    `environ` and `home` default to this process's (the installer passes another machine's layout in tests).
    """
    platform = platform or sys.platform
    environ = os.environ if environ is None else environ
    home = home or os.path.expanduser("~")
    override = environ.get(CONFIG_DIR_ENV, "").strip()
    if override:
        return os.path.expanduser(override)
    if platform == "win32":
        base = environ.get("APPDATA", "").strip() or os.path.join(home, "AppData", "Roaming")
        return os.path.join(base, APP_NAME)
    if platform == "darwin":
        return os.path.join(home, "Library", "Application Support", APP_NAME)
    base = environ.get("XDG_CONFIG_HOME", "").strip() or os.path.join(home, ".config")
    return os.path.join(base, APP_NAME)

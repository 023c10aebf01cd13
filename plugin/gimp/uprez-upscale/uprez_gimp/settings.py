"""The procedure's arguments (what the dialog shows and scripts pass) and the job they make."""

from __future__ import annotations

from typing import Any, NamedTuple

from uprez_client.options import LORA_HINT, MAX_SCALE, MEMORY_ITEMS, PRESET_HINTS, PRESETS, job_params, parse_loras

from .plan import TARGETS, PlanError

PROCEDURE = "plug-in-uprez-upscale"
MENU_PATH = "<Image>/Filters/Enhance"
MENU_LABEL = "_Upscale with Uprez..."
MIN_SCALE = 1.01  # the engine wants a factor above 1
DEFAULT_SCALE = 2.0
MAX_GIMP_SEED = 2**31 - 1  # a GIMP int argument is 32-bit; the engine takes larger seeds from other clients
PRESET_LABELS = {"faithful": "Faithful", "balanced": "Balanced", "creative": "Creative"}
MODEL_HINT = ("empty: the engine's default model; or 'builtin', a model folder's name from the engine's model "
              "folders, a local path, or a Hugging Face id already downloaded; an upscale model's path (.pth, "
              ".safetensors: ESRGAN, SwinIR, SPAN...) runs that SR model on its own")
UPSAMPLER_HINT = ("empty: start from a Lanczos upscale; or an upscale model's name (`uprez models list`) or path, "
                  "whose output the model above then refines")


# The "GPU memory" choice: a Gimp.Choice nick for each of the engine's memory modes, and one for "whatever the
# engine was started with" (sends no memory param).
ENGINE_MEMORY = "engine"


class Settings(NamedTuple):
    """What one run was asked for; `params` are the engine's job params (options.job_params)."""

    params: dict[str, Any]
    target: str
    selection_only: bool

    @property
    def scale(self) -> float:
        return float(self.params["scale"])


def settings_from(scale: float, preset: str, model: str = "", seed: int = 0, prompt: str = "",
                  target: str = "resize", selection_only: bool = False, upsampler: str = "",
                  memory: str = ENGINE_MEMORY, loras: str = "") -> Settings:
    """Check the dialog's (or a script's) values; raises PlanError with what to change."""
    if target not in TARGETS:
        raise PlanError(f"the target must be one of {', '.join(TARGETS)}, got {target!r}")
    try:
        params = job_params(scale, preset, (model or "").strip() or None, seed, prompt or "",
                            upsampler=(upsampler or "").strip() or None,
                            memory=None if memory in ("", ENGINE_MEMORY) else memory,
                            loras=parse_loras(loras or "") or None)  # none: the param is not sent
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    return Settings(params, target, bool(selection_only))


def memory_choices() -> list[tuple[str, str, str]]:
    """(nick, label, hint) for each GPU memory mode (uprez_client.options.MEMORY_ITEMS), the engine's own first."""
    return [(value or ENGINE_MEMORY, label, hint) for label, value, hint in MEMORY_ITEMS]


def preset_choices() -> list[tuple[str, str, str]]:
    """(nick, label, hint) for each preset, in the order the dialog lists them."""
    return [(name, PRESET_LABELS[name], PRESET_HINTS[name]) for name in PRESETS]


__all__ = ["DEFAULT_SCALE", "LORA_HINT", "MAX_GIMP_SEED", "MAX_SCALE", "MENU_LABEL", "MENU_PATH", "MIN_SCALE",
           "MODEL_HINT", "PROCEDURE", "UPSAMPLER_HINT", "ENGINE_MEMORY", "Settings", "memory_choices", "preset_choices",
           "settings_from"]

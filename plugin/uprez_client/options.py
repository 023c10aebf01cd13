"""What the editors' dialogs offer, turned into the engine's job params: one mapping for every bridge."""

from __future__ import annotations

import re
from typing import Any

from .protocol import (  # noqa: F401 - MAX_SCALE for the dialogs
    LORA_WEIGHT_LIMIT,
    MAX_SCALE,
    MAX_SEED,
    PRESETS,
    scale_problem,
)

PRESET_HINTS = {
    "faithful": "keeps the picture as it is; sharpens what is there",
    "balanced": "the model's defaults: new detail, same structure",
    "creative": "invents more texture; small things may change",
}
SCALES = (1.5, 2.0, 3.0, 4.0)  # the dialogs' quick choices; any factor > 1 and <= MAX_SCALE is allowed
# The engine's job param `memory` (engine.settings.MEMORY_CHOICES): (label, value, hint); None = send nothing, so
# the engine's own --memory setting applies.
MEMORY_ITEMS = (
    ("Engine's setting", None, "what `uprez serve --memory` says (auto unless set)"),
    ("Auto", "auto", "plan from free GPU memory and pick the fastest mode that fits"),
    ("All on the GPU", "gpu", "fastest; needs the whole model in GPU memory"),
    ("Model offload", "model-offload", "one component on the GPU at a time"),
    ("Group offload", "group-offload", "one transformer block at a time, streamed: much less memory, slower"),
    ("Sequential offload", "sequential", "one layer at a time: the least memory, the slowest"),
)


def job_params(scale: float = 2.0, preset: str = "balanced", model: str | None = None, seed: int = 0,
               prompt: str = "", **advanced: Any) -> dict[str, Any]:
    """The params of one job, checked here so a dialog can show the message before anything is sent.

    `advanced` passes engine params through (steps, strength, tile_size, ...); the engine checks those.
    Raises ValueError with a message a person can act on.
    """
    problem = scale_problem(scale, "the scale")
    if problem is not None:
        raise ValueError(problem)
    if preset not in PRESETS:
        raise ValueError(f"the preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    params: dict[str, Any] = {"scale": float(scale), "preset": preset, "seed": seed}
    if model:
        params["model"] = model
    if prompt.strip():
        params["prompt"] = prompt.strip()
    params.update({k: v for k, v in advanced.items() if v is not None})
    return params


def parse_scale(text: str) -> float:
    """A scale typed by a person: "2", "2x", "1.5×", "150%"; raises ValueError saying what is accepted."""
    cleaned = text.strip().lower().rstrip("x×").strip()
    percent = cleaned.endswith("%")
    try:
        value = float(cleaned.rstrip("%").strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a scale; type a factor such as 2, 1.5x or 150%") from None
    value = value / 100.0 if percent else value
    problem = scale_problem(value, "the scale")
    if problem is not None:
        raise ValueError(problem)
    return value


# -- LoRAs: what a person types into a dialog's LoRA field, as the job param `loras` ---------------------------
LORA_HINT = ("LoRAs for the flow model: a name from the engine's LoRA folders or a file's path, with an optional "
             ":WEIGHT (1 = as trained, 0 = off), several separated by commas, e.g. "
             "detail.safetensors:0.8, b.safetensors")
_LORA_SEPARATORS = re.compile(r"[,;\n]")  # ";" as well: the window's saved settings used it before
_LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_NUMBER_LIKE = re.compile(r"[\d\s.+eE-]+")  # only what a number is written with: a weight someone meant to type


def parse_loras(text: str) -> list[str]:
    """The job param `loras` from a dialog's text: "a.safetensors:0.8, b.safetensors" -> ["a.safetensors:0.8",
    "b.safetensors"]; [] when empty. Comma-, semicolon- or newline-separated (so a path with a comma in it cannot
    be typed here). Weights are checked here, as the engine checks them, so the dialog can say so before sending;
    raises ValueError naming the entry. Whether a name or file exists only the engine knows."""
    loras = []
    for entry in _LORA_SEPARATORS.split(text or ""):
        entry = entry.strip()
        if not entry:
            continue
        if _NUMBER_LIKE.fullmatch(entry):  # "a.safetensors:0,8" split at its decimal comma
            raise ValueError(f"{entry!r} is not a LoRA: a weight goes after its LoRA, as PATH:WEIGHT with a "
                             f"decimal point (a.safetensors:0.8); commas separate LoRAs")
        weight = _lora_weight(entry)
        if weight is not None:
            head = entry.rpartition(":")[0].strip()
            entry = f"{head}:{weight}"
        loras.append(entry)
    return loras


def _lora_weight(entry: str) -> str | None:
    """The weight text of "PATH:WEIGHT" (checked), or None when the entry is a path alone. As the engine reads it
    (engine.lora.spec): only a last ":" can start a weight, never a Windows drive's ("C:\\x") or a path's."""
    head, sep, tail = entry.rpartition(":")
    head, tail = head.strip(), tail.strip()
    if not sep or not head or tail.startswith(("/", "\\")) or (len(head) == 1 and head.isalpha()):
        return None
    if not (_NUMBER_LIKE.fullmatch(tail) or head.lower().endswith(_LORA_SUFFIXES)):
        return None  # "name:with-colon": a path the engine looks up as it is
    try:
        weight = float(tail)
    except ValueError:
        raise ValueError(f"the LoRA weight in {entry!r} is not a number; write PATH:WEIGHT, e.g. "
                         f"{head}:0.8") from None
    if weight != weight or abs(weight) > LORA_WEIGHT_LIMIT:
        raise ValueError(f"the LoRA weight in {entry!r} must be from -{LORA_WEIGHT_LIMIT:g} to "
                         f"{LORA_WEIGHT_LIMIT:g} (1 = as trained, 0 = off)")
    return tail


# -- the "Upscale model" choice: what GET /v1/models lists, told apart by kind ---------------------------------
BUILTIN_LABEL = "Built-in flow model (small, runs on the CPU)"
_CHOICE_SEPARATOR = "\t"  # between an SR model and the flow model that refines its output, in one choice's key


def choice_key(model: str | None, upsampler: str | None = None) -> str:
    """One string for a (model, upsampler) pair, to keep as a combo box item's data; "" = the engine's default."""
    return (upsampler + _CHOICE_SEPARATOR if upsampler else "") + (model or "")


def split_choice(key: str | None) -> tuple[str | None, str | None]:
    """(model, upsampler) back from `choice_key`; a typed model id comes back as itself."""
    if not key:
        return None, None
    upsampler, _, model = key.rpartition(_CHOICE_SEPARATOR)
    return model or None, upsampler or None


def _name(model: dict[str, Any]) -> str:
    return str(model.get("name") or model.get("id"))


def model_choices(listing: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, key) for every way to upscale the engine offers: the built-in flow model, the big flow models,
    each SR model on its own, and each SR model followed by a refine with each flow model."""
    models = [m for m in listing.get("models", []) if isinstance(m, dict) and m.get("id")]
    flow = [m for m in models if m.get("kind") != "sr"]
    flow.sort(key=lambda m: m.get("kind") != "builtin")  # the built-in model first
    sr = [m for m in models if m.get("kind") == "sr"]
    choices = []
    for m in flow:
        label = BUILTIN_LABEL if m.get("kind") == "builtin" else f"Flow model: {_name(m)}"
        choices.append((label + (" (engine default)" if m.get("default") else ""), choice_key(m["id"])))
    for m in sr:
        choices.append((f"SR model: {_name(m)} (on its own)", choice_key(m["id"])))
    for s in sr:
        for m in flow:
            refine = "the built-in model" if m.get("kind") == "builtin" else _name(m)
            choices.append((f"SR model {_name(s)}, then refine with {refine}", choice_key(m["id"], s["id"])))
    return choices

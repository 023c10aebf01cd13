"""The dialog's choices as plain values, and their mapping to a job. Pure: no Krita, no Qt."""

from __future__ import annotations

import json
import random
from typing import Any, NamedTuple

from .client_import import options
from .plan import SOURCES, TARGETS

SCALE_CHOICES = tuple(f"{s:g}×" for s in options.SCALES) + ("Custom…",)
DEFAULT_SCALE = "2×"
SEED_MAX = 2**31 - 1  # what a Qt spin box holds; the engine takes up to 2^63-1 from scripts


class Choices(NamedTuple):
    """What the dialog shows, as text and flags, exactly as a person set it."""

    scale: str = DEFAULT_SCALE  # one of SCALE_CHOICES
    custom_scale: str = "2.5"  # read when scale is "Custom…"
    preset: str = "balanced"
    model: str = ""  # "" = the engine's default; a typed id, or options.choice_key(model, upsampler)
    seed: int = 0
    prompt: str = ""
    source: str = "layer"
    target: str = "resize"
    selection_only: bool = False
    memory: str = ""  # "" = the engine's own setting; else a value of options.MEMORY_ITEMS
    loras: str = ""  # as typed: "a.safetensors:0.8, b" (options.parse_loras); "" = the model as it is


class Request(NamedTuple):
    scale: float
    target: str
    selection_only: bool
    source: str
    params: dict[str, Any]


def to_request(choices: Choices) -> Request:
    """Raises ValueError with a message the dialog shows as it is."""
    text = choices.custom_scale if choices.scale == SCALE_CHOICES[-1] else choices.scale
    scale = options.parse_scale(text)
    if choices.source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    if choices.target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}")
    model, upsampler = options.split_choice(choices.model.strip())
    params = options.job_params(scale, choices.preset, model, choices.seed, choices.prompt, upsampler=upsampler,
                                memory=choices.memory or None, loras=options.parse_loras(choices.loras) or None)
    params.pop("scale")
    return Request(scale, choices.target, choices.selection_only, choices.source, params)


def random_seed(rng: random.Random | None = None) -> int:
    return (rng or random).randint(0, SEED_MAX)


# -- remembered choices: per document in the dialog, and the last ones for the quick action ---------------------
SETTINGS_GROUP = "uprez"  # Krita's own settings file (kritarc), [uprez] last_choices=<json>
LAST_CHOICES_KEY = "last_choices"


def choices_to_text(choices: Choices) -> str:
    return json.dumps(choices._asdict(), sort_keys=True)


def choices_from_text(text: str | None) -> Choices:
    """Choices saved by `choices_to_text`; anything unreadable, unknown or of the wrong type falls back to the
    default (a settings file from another version must not stop the dialog from opening)."""
    try:
        saved = json.loads(text or "{}")
    except ValueError:
        return Choices()
    if not isinstance(saved, dict):
        return Choices()
    defaults = Choices()
    kept = {}
    for field in Choices._fields:
        value = saved.get(field, getattr(defaults, field))
        wanted = type(getattr(defaults, field))
        if isinstance(value, wanted) and not (wanted is int and isinstance(value, bool)):
            kept[field] = value
    return defaults._replace(**kept)


def quick_choices(last: Choices, has_selection: bool) -> Choices:
    """What "Upscale selection with Uprez" runs: the last settings, on the selection where there is one (else the
    whole layer), always as a new layer in the resized canvas or a new document as last chosen."""
    return last._replace(selection_only=has_selection)

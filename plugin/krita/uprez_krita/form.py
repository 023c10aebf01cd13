"""The dialog's choices as plain values, and their mapping to a job. Pure: no Krita, no Qt."""

from __future__ import annotations

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
                                memory=choices.memory or None)
    params.pop("scale")
    return Request(scale, choices.target, choices.selection_only, choices.source, params)


def random_seed(rng: random.Random | None = None) -> int:
    return (rng or random).randint(0, SEED_MAX)

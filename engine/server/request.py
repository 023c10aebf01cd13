"""`JobRequest`: the one request type that crosses HTTP -> job queue -> pipeline, parsed from the `params` JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidInput
from engine.params import Param, check
from engine.photo import PhotoMeta
from engine.server.codec import ImageFormat
from engine.settings import MEMORY_CHOICES, SETTINGS_PARAMS, UpscaleSettings

_SETTINGS = tuple(SETTINGS_PARAMS)
MAX_PREVIEW_EVERY = 1000
MAX_CLIENT_NAME = 64
# The server's own params, in the field table's terms (engine.params); the settings' rows are UpscaleSettings'.
REQUEST_PARAMS: dict[str, Param] = {
    "format": Param("text"), "width": Param("whole"), "height": Param("whole"), "channels": Param("text"),
    "depth": Param("whole"),
    "model": Param("text"),
    "region_only": Param("flag"),
    "mask_format": Param("choice", "raw or png", choices=("raw", "png")),
    "preview_every": Param("whole", f"a whole number from 0 (no previews) to {MAX_PREVIEW_EVERY} steps", 0,
                           MAX_PREVIEW_EVERY),
    "client": Param("text"),
    "memory": Param("choice", choices=MEMORY_CHOICES),
}
KNOWN_PARAMS = frozenset(_SETTINGS) | frozenset(REQUEST_PARAMS)


def parse_params(text: str | bytes) -> dict[str, Any]:
    """The `params` part as a JSON object; NaN and Infinity are refused like any other malformed JSON."""

    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        data = json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"params is not valid JSON ({exc}); send an object such as {{\"scale\": 2}}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"params must be a JSON object such as {{\"scale\": 2}}, got {type(data).__name__}")
    return data


def _check_values(data: dict[str, Any]) -> None:
    """Every param against its row: JSON's true is not 1, 1e400 is not a number, with the settings' own words."""
    given = {name: value for name, value in data.items()  # null, and "" for a choice, mean the default
             if value is not None and not (value == "" and name in ("memory", "mask_format"))}
    problem = check({**SETTINGS_PARAMS, **REQUEST_PARAMS}, given)
    if problem is not None:
        raise InvalidInput(problem)


@dataclass(frozen=True)
class JobRequest:
    """What a client asked for: the upscale settings, the model, and how its image (and mask) travel."""

    settings: UpscaleSettings = field(default_factory=UpscaleSettings)
    image: ImageFormat = field(default_factory=ImageFormat)
    model: str | None = None  # None = the server's default model
    region_only: bool = False
    mask_format: str | None = None  # raw / png when a mask comes with the image
    preview_every: int = 0  # a small JPEG preview on every Nth denoising step; 0 = none (each costs a VAE decode)
    client: str = ""  # who sent it ("Krita", "GIMP", ...), so a queue view can say whose job it is
    memory: str | None = None  # memory mode for this job's model (engine.memory_modes); None = the server's
    # The image's ICC profile and metadata: from the PNG/TIFF itself, or the `profile` part beside raw
    # pixels. Not a param (it is bytes): it travels in the upload, so to_params leaves it out.
    photo: PhotoMeta = field(default_factory=PhotoMeta, compare=False)

    @classmethod
    def from_params(cls, data: dict[str, Any], *, sniffed: str | None = None, has_mask: bool = False) -> JobRequest:
        """Validate a params object; `sniffed` is the image's file type when its bytes have a signature."""
        unknown = sorted(set(data) - KNOWN_PARAMS)
        if unknown:
            raise InvalidInput(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_PARAMS))}")
        _check_values(data)
        settings = UpscaleSettings.from_dict({k: v for k, v in data.items() if k in _SETTINGS and v is not None})
        kind = data.get("format") or ("raw" if "width" in data or "height" in data else sniffed)
        if kind is None:
            raise InvalidInput("cannot tell the image format: give format (raw, png or tiff), and for raw "
                               "also width, height, channels and depth")
        if kind == "raw":
            image = ImageFormat("raw", data.get("width", 0), data.get("height", 0), data.get("channels", "RGBA"),
                                data.get("depth", 8))
        else:
            stray = sorted(k for k in ("width", "height", "channels", "depth") if k in data)
            if stray:
                raise InvalidInput(f"{', '.join(stray)} only apply to raw images; a {kind} file carries its own")
            image = ImageFormat(kind)
        mask_format = (data.get("mask_format") or ("raw" if kind == "raw" else "png")) if has_mask else None
        region_only = data.get("region_only", False)
        if region_only and not has_mask:
            raise InvalidInput("region_only needs a mask part: the region is what the mask selects")
        model = data.get("model") or None
        preview_every = data.get("preview_every") or 0
        client = (data.get("client") or "").strip()
        if len(client) > MAX_CLIENT_NAME or not client.isprintable():
            raise InvalidInput(f"client must be a short printable name (at most {MAX_CLIENT_NAME} characters), "
                               f"got {client[:80]!r}")
        memory = data.get("memory") or None
        return cls(settings, image, model, region_only, mask_format, preview_every, client, memory)

    def to_params(self) -> dict[str, Any]:
        """The params object that `from_params` reads back into an equal request."""
        params: dict[str, Any] = dict(self.settings.to_dict())
        params.update(format=self.image.kind, model=self.model, region_only=self.region_only,
                      preview_every=self.preview_every, client=self.client)
        if self.image.kind == "raw":
            params.update(width=self.image.width, height=self.image.height, channels=self.image.channels,
                          depth=self.image.depth)
        if self.mask_format is not None:
            params["mask_format"] = self.mask_format
        if self.memory is not None:
            params["memory"] = self.memory
        return params

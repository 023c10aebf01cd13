"""How Krita's pixels travel to the engine. Pure: no Krita, no Qt.

Krita's `pixelData` gives a layer's native bytes. For the RGBA colour model with integer depths
those are B, G, R, A samples, little-endian: the engine's raw "BGRA" at depth 8 or 16; at 32-bit float
they are R, G, B, A: the engine's raw "RGBA" at depth 32. They go as they are, with no conversion and no
copy, together with the document's ICC profile (the engine converts to sRGB for the model and back).
Float values above 1 (scene-referred highlights) are clipped by the engine. Half floats and other colour
models get a message that says how to convert.
"""

from __future__ import annotations

from typing import NamedTuple

SUPPORTED_DEPTHS = {"U8": 8, "U16": 16, "F32": 32}
CONVERT_HINT = ("convert it with Image > Convert Image Color Space… to RGB/Alpha, 8-bit or 16-bit integer or "
                "32-bit float")


class UnsupportedDocument(ValueError):
    """The source's colour model or depth is one the engine cannot take as it is."""


class PixelFormat(NamedTuple):
    channels: str  # the engine's raw sample order
    depth: int  # bits per sample
    krita_depth: str  # Krita's name for it, for new layers and documents

    @property
    def pixel_bytes(self) -> int:
        return len(self.channels) * self.depth // 8

    def buffer_size(self, width: int, height: int) -> int:
        return width * height * self.pixel_bytes


def pixel_format(color_model: str, color_depth: str) -> PixelFormat:
    """The engine format for a Krita colour model and depth (e.g. "RGBA", "U16"), or UnsupportedDocument."""
    if color_model != "RGBA":
        raise UnsupportedDocument(f"Uprez works on RGB images, and this one is {color_model or 'unknown'}; "
                                  + CONVERT_HINT)
    if color_depth not in SUPPORTED_DEPTHS:
        raise UnsupportedDocument(f"Uprez takes 8-bit and 16-bit integer and 32-bit float images, and this one "
                                  f"is {color_depth}; " + CONVERT_HINT)
    return PixelFormat("RGBA" if color_depth == "F32" else "BGRA", SUPPORTED_DEPTHS[color_depth], color_depth)


def check_buffer(data: bytes, width: int, height: int, fmt: PixelFormat, what: str) -> None:
    """Krita hands back an empty buffer for areas it cannot read; catch that before the engine does."""
    expected = fmt.buffer_size(width, height)
    if len(data) != expected:
        raise ValueError(f"Krita gave {len(data)} bytes for the {what} ({width}x{height}), expected {expected}; "
                         "is the layer a paint layer?")

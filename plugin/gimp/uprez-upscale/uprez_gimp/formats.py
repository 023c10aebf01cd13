"""Which babl format carries a GIMP image's pixels to the engine, and how its bytes travel.

Pixels go as R'G'B'A in the image's own colour space (its profile's primaries and tone curve), with the
image's ICC profile; the engine converts them to sRGB for the model, which was trained on sRGB-encoded
pixels, and back. babl converts from and to the layer's own precision. A layer without alpha
is read with alpha too (babl fills 1.0), so there is one code path and the result layer always has alpha,
which a selection-only result needs anyway.
"""

from __future__ import annotations

import sys
from array import array
from typing import NamedTuple

CHANNELS = "RGBA"
MASK_FORMAT = "Y u8"  # the selection channel, one byte per pixel: what the engine's raw mask is


class Transfer(NamedTuple):
    """One pixel format on both sides of the wire: the babl name GIMP reads and writes, the engine's depth."""

    babl: str
    depth: int  # bits per sample: 8 and 16 unsigned, 32 float in [0, 1]

    @property
    def bytes_per_pixel(self) -> int:
        return len(CHANNELS) * self.depth // 8

    def size(self, width: int, height: int) -> int:
        return width * height * self.bytes_per_pixel


U8 = Transfer("R'G'B'A u8", 8)
U16 = Transfer("R'G'B'A u16", 16)
FLOAT = Transfer("R'G'B'A float", 32)

# GIMP's precisions by component type; u32, half and double travel as float (exact for half, and finer
# than the models see for the others), so the engine only meets the three depths it accepts.
_BY_COMPONENT = {"u8": U8, "u16": U16, "u32": FLOAT, "half": FLOAT, "float": FLOAT, "double": FLOAT}


def transfer_for(precision: str) -> Transfer:
    """The transfer format for a Gimp.Precision, given by nick ("u16-non-linear") or name (GIMP_PRECISION_…)."""
    text = precision.strip().lower()
    if text.startswith("gimp_precision_"):
        text = text[len("gimp_precision_"):]
    component = text.replace("_", "-").split("-")[0]
    try:
        return _BY_COMPONENT[component]
    except KeyError:
        raise ValueError(f"unknown GIMP precision {precision!r}; expected one like 'u8-non-linear'") from None


def swap_to_little_endian(data: bytes, depth: int, byteorder: str = sys.byteorder) -> bytes:
    """babl hands out native-endian samples and the engine wants little-endian: swap on big-endian machines.

    The same call turns the engine's little-endian result back into native order.
    """
    if depth == 8 or byteorder == "little":
        return data
    samples = array("H" if depth == 16 else "f")
    samples.frombytes(data)
    samples.byteswap()
    return samples.tobytes()

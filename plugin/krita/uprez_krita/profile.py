"""The ICC profile of a Krita layer or document, as bytes the engine can hand to LittleCMS.

Krita's scripting API names a profile (`colorProfile()`) but cannot hand out its bytes. Krita's own TIFF
export always embeds the profile, so a 1x1 document in the same colour space is exported to a temporary
TIFF and the profile is read back from its ICC tag (34675). Standard library only (Krita's Python).
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import Any

ICC_TAG = 34675
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 7: 1}


def icc_from_tiff(data: bytes) -> bytes | None:
    """The ICC profile in a classic TIFF's first IFD, or None. Pure: tested without Krita."""
    if len(data) < 8 or data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[offset:offset + 2])
    for index in range(count):
        entry = offset + 2 + 12 * index
        if entry + 12 > len(data):
            return None
        tag, kind, length = struct.unpack(order + "HHI", data[entry:entry + 8])
        if tag != ICC_TAG:
            continue
        size = _TYPE_SIZES.get(kind, 1) * length
        if size <= 4:
            return data[entry + 8:entry + 8 + size]
        (start,) = struct.unpack(order + "I", data[entry + 8:entry + 12])
        return data[start:start + size] if start + size <= len(data) else None
    return None


def profile_bytes(holder: Any) -> bytes | None:
    """The profile of `holder` (a krita.Node or krita.Document) as ICC bytes; None where Krita cannot
    export one (the engine then takes the pixels as sRGB)."""
    from krita import InfoObject, Krita

    app = Krita.instance()
    probe = app.createDocument(1, 1, "uprez-profile", holder.colorModel(), holder.colorDepth(),
                               holder.colorProfile(), 72.0)
    if probe is None:
        return None
    handle, path = tempfile.mkstemp(prefix="uprez-profile-", suffix=".tif")
    os.close(handle)
    try:
        probe.setBatchmode(True)  # no export dialog
        if not probe.exportImage(path, InfoObject()):
            return None
        with open(path, "rb") as f:
            return icc_from_tiff(f.read())
    finally:
        probe.close()
        os.unlink(path)

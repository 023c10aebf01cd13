""""Open in Uprez window": the active layer (whole canvas) as a PNG for the desktop window, which opens it."""

from __future__ import annotations

from typing import Any

from .client_import import uprez_client
from .formats import check_buffer, pixel_format
from .profile import profile_bytes


def open_active_layer(document: Any, node: Any = None) -> str | None:
    """Write the layer and start the window on it; returns the file, or None after saying why it could not."""
    from .client_import import handoff
    from .quick import _message

    try:
        path = write_layer(document, node)
        handoff.open_in_window(path)
    except (ValueError, handoff.HandoffError, OSError) as exc:
        _message(str(exc))
        return None
    _message("opening the layer in the Uprez window")
    return path


def write_layer(document: Any, node: Any = None) -> str:
    """The layer's pixels over the whole canvas as a PNG in the hand-off folder (8 or 16 bits, its profile)."""
    from .client_import import handoff

    if document is None:
        raise ValueError("there is no open document; open an image first")
    node = node if node is not None else document.activeNode()
    holder = node if node is not None else document
    fmt = pixel_format(holder.colorModel(), holder.colorDepth())
    if fmt.depth not in (8, 16):
        raise ValueError("the Uprez window opens 8-bit and 16-bit images; convert this one with Image > Convert "
                         "Image Color Space… first")
    width, height = document.width(), document.height()
    data = bytes(holder.pixelData(0, 0, width, height))
    check_buffer(data, width, height, fmt, "layer")
    name = node.name() if node is not None else "image"
    path = handoff.handoff_path(name)
    with open(path, "wb") as f:
        f.write(handoff.png_bytes(handoff.bgra_to_rgba(data, fmt.depth), width, height, fmt.depth,
                                  profile_bytes(holder)))
    return path


__all__ = ["open_active_layer", "uprez_client", "write_layer"]

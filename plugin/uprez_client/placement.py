"""Where an upscale's result goes in the document, decided before anything is sent: one plan for both bridges.

Pure: plain numbers in, a Placement out. Coordinates are the document's unless a name says otherwise; a layer
may sit anywhere (offsets, even partly off the canvas). The result lands either on top of the source in the
document scaled by S ("resize"), or alone in a new document ("new_document"). With a selection only its crop
(plus context) is sent with the selection as a soft mask, and the result layer's alpha is that mask; a new
document is then framed on the selection, so the crop's context margin falls outside its canvas.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

from .regions import Region, scaled, scaled_size, selection_region

TARGETS = ("resize", "new_document")
Rect = Tuple[int, int, int, int]  # x, y, width, height


class PlacementError(ValueError):
    """The upscale cannot start; the message says what to do (front ends show it as is)."""


class Placement(NamedTuple):
    target: str
    scale: float
    region_only: bool  # the selection goes as the job's mask, and the result's alpha is that mask
    crop: Region  # the pixels sent (the mask is read at the same place) and where they land in the scaled document
    layer_read: Rect  # the same pixels in the source layer's own coordinates
    canvas: tuple[int, int]  # the target document's size: the scaled document, or the new document
    layer_at: tuple[int, int]  # where the result layer's top-left goes on that canvas
    layer_name: str


def plan_placement(doc_size: tuple[int, int], layer: Rect, scale: float, target: str = "resize",
                   selection: Rect | None = None, selection_only: bool = False, source_name: str = "",
                   preset: str | None = "balanced") -> Placement:
    """The plan for one upscale of `layer` ((x, y, width, height) in the document) in a document of `doc_size`.

    `selection`: the selection's bounding box (x, y, width, height), or None when nothing is selected; it
    counts only with `selection_only`. Raises PlacementError with a message a person can act on.
    """
    if target not in TARGETS:
        raise PlacementError(f"the target must be one of {', '.join(TARGETS)}, got {target!r}")
    ox, oy, width, height = layer
    if width <= 0 or height <= 0:
        raise PlacementError("the layer is empty (0 pixels); pick a layer with pixels in it")
    if not selection_only:
        out_w, out_h = scaled_size(width, height, scale)
        crop = Region(ox, oy, width, height, scaled(ox, scale), scaled(oy, scale), out_w, out_h)
        frame_at, frame_size = (crop.out_x, crop.out_y), (out_w, out_h)
    else:
        if selection is None:
            raise PlacementError("Nothing is selected: select the part to upscale, or switch off \"Selection "
                                 "only\" to upscale the whole layer")
        found = selection_region(selection, layer, scale)
        if found is None:
            raise PlacementError("The selection does not touch this layer: select an area over it, or pick the "
                                 "layer under the selection")
        crop = found
        sx, sy, sw, sh = selection
        left, top = scaled(max(sx, ox), scale), scaled(max(sy, oy), scale)
        right, bottom = scaled(min(sx + sw, ox + width), scale), scaled(min(sy + sh, oy + height), scale)
        frame_at, frame_size = (left, top), (right - left, bottom - top)
    if target == "resize":
        canvas, layer_at = scaled_size(doc_size[0], doc_size[1], scale), (crop.out_x, crop.out_y)
    else:
        canvas, layer_at = frame_size, (crop.out_x - frame_at[0], crop.out_y - frame_at[1])
    name = layer_name(source_name, scale, selection_only, preset)
    return Placement(target, scale, selection_only, crop, (crop.x - ox, crop.y - oy, crop.width, crop.height),
                     canvas, layer_at, name)


def layer_name(source_name: str, scale: float, selection_only: bool, preset: str | None = "balanced") -> str:
    """The new layer says where it came from and how: "Sky selection ×1.5 Uprez (faithful)"."""
    what = (source_name or "image") + (" selection" if selection_only else "")
    return f"{what} ×{scale:g} Uprez" + (f" ({preset})" if preset else "")

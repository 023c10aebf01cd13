"""Where the pixels come from and where the upscaled layer goes, for each target: plain geometry.

Coordinates: the image's, unless a name says otherwise. A layer may sit anywhere (offsets, even partly off
the canvas); GIMP reads a drawable's buffer in the layer's own coordinates and the selection in the image's.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

from uprez_client.regions import scaled, scaled_size, selection_region

TARGETS = ("resize", "new-image")
TARGET_LABELS = {
    "resize": "Resize the image (result as a new layer)",
    "new-image": "Open the result as a new image",
}
TARGET_HINTS = {
    "resize": "scales the image by the factor with GIMP's own interpolation and adds the upscaled layer above",
    "new-image": "leaves this image as it is and opens the upscaled layer in a new image",
}

Rect = Tuple[int, int, int, int]  # x, y, width, height
AGAIN = "then run Filters > Enhance > Upscale with Uprez again"


class PlanError(ValueError):
    """The run cannot start; the message says what to do (it is shown to the user as is)."""


class Plan(NamedTuple):
    """One run's geometry. `read` is in the layer's coordinates, `mask_at` in the image's."""

    read: Rect  # the layer's pixels to send
    mask_at: tuple[int, int] | None  # top-left of the selection mask to send (same size as read); None = no mask
    out_width: int  # the result's size
    out_height: int
    layer_x: int  # the result layer's offsets in the target image
    layer_y: int
    image_width: int  # the target image's size: the scaled image (resize) or the new image
    image_height: int


def check_drawable(is_layer: bool, is_rgb: bool, is_gray: bool, is_indexed: bool) -> None:
    """Refuse what the engine cannot take, with the menu item that fixes it."""
    if not is_layer:
        raise PlanError("Uprez upscales layers: pick a layer (not a channel or layer mask) in the Layers dialog, "
                        + AGAIN + ".")
    if is_indexed:
        raise PlanError("This image uses indexed colour, which Uprez cannot upscale. Convert it with "
                        "Image > Mode > RGB, " + AGAIN + ".")
    if is_gray or not is_rgb:
        raise PlanError("This image is grayscale, which Uprez cannot upscale. Convert it with "
                        "Image > Mode > RGB, " + AGAIN + ".")


def make_plan(image_size: tuple[int, int], layer: Rect, scale: float, target: str,
              selection: tuple[int, int, int, int] | None = None, selection_only: bool = False) -> Plan:
    """The geometry of one run.

    `layer` is the layer's (offset_x, offset_y, width, height); `selection` the selection's bounds as
    Gimp.Selection.bounds gives them, (x1, y1, x2, y2) with x2/y2 exclusive, or None when nothing is selected.
    Without `selection_only` the whole layer is sent, whatever is selected.
    """
    if target not in TARGETS:
        raise PlanError(f"the target must be one of {', '.join(TARGETS)}, got {target!r}")
    image_width, image_height = image_size
    ox, oy, width, height = layer
    if width <= 0 or height <= 0:
        raise PlanError("the layer is empty (0 pixels); pick a layer with pixels in it")

    if selection_only:
        if selection is None:
            raise PlanError("Nothing is selected. Select the area to upscale (for example with the Ellipse "
                            "Select tool), or untick \"Selection only\" to upscale the whole layer.")
        x1, y1, x2, y2 = selection
        region = selection_region((x1, y1, x2 - x1, y2 - y1), (ox, oy, width, height), scale)
        if region is None:
            raise PlanError("The selection does not touch this layer. Select an area over the layer, or pick "
                            "the layer under the selection.")
        read = (region.x - ox, region.y - oy, region.width, region.height)
        mask_at: tuple[int, int] | None = (region.x, region.y)
        out_width, out_height = region.out_width, region.out_height
        placed = (region.out_x, region.out_y)
    else:
        read = (0, 0, width, height)
        mask_at = None
        out_width, out_height = scaled_size(width, height, scale)
        placed = (scaled(ox, scale), scaled(oy, scale))

    if target == "resize":
        new_width, new_height = scaled_size(image_width, image_height, scale)
        return Plan(read, mask_at, out_width, out_height, placed[0], placed[1], new_width, new_height)
    return Plan(read, mask_at, out_width, out_height, 0, 0, out_width, out_height)


def layer_name(source: str, scale: float, selection_only: bool) -> str:
    """The new layer's name says where it came from: "Background ×2 (Uprez)"."""
    part = " selection" if selection_only else ""
    return f"{source}{part} ×{scale:g} (Uprez)"

"""Where the pixels come from and where the upscaled layer goes: the placement both bridges share
(uprez_client.placement), reached from GIMP's terms, and the checks of what GIMP hands the plug-in.

GIMP reads a drawable's buffer in the layer's own coordinates (`layer_read`) and the selection in the
image's (`crop`).
"""

from __future__ import annotations

from typing import Tuple

from uprez_client.placement import Placement, PlacementError, plan_placement

TARGETS = ("resize", "new-image")
TARGET_LABELS = {
    "resize": "Resize the image (result as a new layer)",
    "new-image": "Open the result as a new image",
}
PLACEMENT_TARGETS = {"resize": "resize", "new-image": "new_document"}  # GIMP's choice names -> the shared plan's
TARGET_HINTS = {
    "resize": "scales the image by the factor with GIMP's own interpolation and adds the upscaled layer above",
    "new-image": "leaves this image as it is and opens the upscaled layer in a new image",
}

Rect = Tuple[int, int, int, int]  # x, y, width, height
AGAIN = "then run Filters > Enhance > Upscale with Uprez again"


class PlanError(ValueError):
    """The run cannot start; the message says what to do (it is shown to the user as is)."""


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
              selection: tuple[int, int, int, int] | None = None, selection_only: bool = False,
              source_name: str = "", preset: str | None = "balanced") -> Placement:
    """The shared placement of one run (uprez_client.placement), from GIMP's own terms.

    `layer` is the layer's (offset_x, offset_y, width, height); `selection` the selection's bounds as
    Gimp.Selection.bounds gives them, (x1, y1, x2, y2) with x2/y2 exclusive, or None when nothing is selected.
    Without `selection_only` the whole layer is sent, whatever is selected.
    """
    if target not in TARGETS:
        raise PlanError(f"the target must be one of {', '.join(TARGETS)}, got {target!r}")
    box = None if selection is None else (selection[0], selection[1], selection[2] - selection[0],
                                          selection[3] - selection[1])
    try:
        return plan_placement(image_size, layer, scale, PLACEMENT_TARGETS[target], box, selection_only,
                              source_name, preset)
    except PlacementError as exc:
        raise PlanError(str(exc)) from None

"""What one upscale will do to a document, decided before anything is sent. Pure: no Krita, no Qt.

A plan says which pixels are read (the whole canvas, or a selection's crop with context), what goes
to the engine, and where the result lands: on top of the source in the same document scaled by S
("resize"), or in a new document ("new_document"). With a selection the result layer holds only the
region, its alpha the selection's soft mask; in a new document the canvas is the selection's box.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .client_import import options, regions

TARGETS = ("resize", "new_document")
TARGET_LABELS = {"resize": "Resize canvas", "new_document": "New document"}
SOURCES = ("layer", "visible")
SOURCE_LABELS = {"layer": "Active layer", "visible": "Visible image"}


class Plan(NamedTuple):
    scale: float
    target: str
    selection_only: bool
    read: regions.Region  # the crop read from the source and where it lands in the scaled canvas
    canvas: tuple[int, int]  # the result's canvas: the scaled document, or the new document's size
    layer_at: tuple[int, int]  # where the result layer's pixels go on that canvas
    params: dict[str, Any]  # the engine's job params


def make_plan(doc_size: tuple[int, int], scale: float, target: str = "resize", selection_only: bool = False,
              selection_box: tuple[int, int, int, int] | None = None,
              params: dict[str, Any] | None = None) -> Plan:
    """Decide the crop, the output canvas and the layer position; raises ValueError a person can act on."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    job = options.job_params(scale, **(params or {}))
    width, height = doc_size
    out_w, out_h = regions.scaled_size(width, height, scale)
    if not selection_only:
        read = regions.Region(0, 0, width, height, 0, 0, out_w, out_h)
        return Plan(scale, target, False, read, (out_w, out_h), (0, 0), job)
    if selection_box is None:
        raise ValueError("there is no selection; select the part to upscale, or switch off Selection only")
    read = regions.selection_region(selection_box, (0, 0, width, height), scale)
    if read is None:
        raise ValueError("the selection lies outside the canvas; select a part of the image")
    job["region_only"] = True
    if target == "resize":
        return Plan(scale, target, True, read, (out_w, out_h), (read.out_x, read.out_y), job)
    # A new document framed on the selection: its box, scaled; the context margin falls outside the canvas.
    sx, sy, sw, sh = selection_box
    left, top = regions.scaled(max(sx, 0), scale), regions.scaled(max(sy, 0), scale)
    right = regions.scaled(min(sx + sw, width), scale)
    bottom = regions.scaled(min(sy + sh, height), scale)
    return Plan(scale, target, True, read, (right - left, bottom - top), (read.out_x - left, read.out_y - top), job)


def layer_name(source_name: str, plan: Plan) -> str:
    preset = plan.params.get("preset", "balanced")
    what = "selection" if plan.selection_only else (source_name or "image")
    return f"{what} ×{plan.scale:g} Uprez ({preset})"

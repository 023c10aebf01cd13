"""What one upscale will do to a document, decided before anything is sent. Pure: no Krita, no Qt.

The placement (which pixels are read, where the result lands, the new layer's name) is the one both bridges
use, `uprez_client.placement`; Krita reads layers in the document's coordinates, so the layer is the whole
canvas. Here it is paired with the engine's job params.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .client_import import options, placement

TARGETS = placement.TARGETS
TARGET_LABELS = {"resize": "Resize canvas", "new_document": "New document"}
SOURCES = ("layer", "visible")
SOURCE_LABELS = {"layer": "Active layer", "visible": "Visible image"}


class Plan(NamedTuple):
    placement: placement.Placement
    params: dict[str, Any]  # the engine's job params


def make_plan(doc_size: tuple[int, int], scale: float, target: str = "resize", selection_only: bool = False,
              selection_box: tuple[int, int, int, int] | None = None, params: dict[str, Any] | None = None,
              source_name: str = "") -> Plan:
    """Decide the crop, the output canvas and the layer; raises ValueError a person can act on."""
    job = options.job_params(scale, **(params or {}))
    width, height = doc_size
    place = placement.plan_placement(doc_size, (0, 0, width, height), scale, target, selection_box,
                                     selection_only, source_name, job.get("preset", "balanced"))
    if place.region_only:
        job["region_only"] = True
    return Plan(place, job)

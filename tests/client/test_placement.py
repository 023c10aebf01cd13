"""The placement plan both bridges use, on plain values: what is read, where the result goes, its name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin.uprez_client.placement import Placement, PlacementError, plan_placement
from plugin.uprez_client.regions import Region, scaled, scaled_size

# doc size, layer (x, y, w, h), scale, target, selection (x, y, w, h) or None, selection only
#   -> crop, layer_read, canvas, layer_at
PLANS = [
    # the whole layer: the document scales and the result sits at the layer's scaled offsets
    ((256, 192), (40, 30, 96, 64), 2.0, "resize", None, False,
     Region(40, 30, 96, 64, 80, 60, 192, 128), (0, 0, 96, 64), (512, 384), (80, 60)),
    # in a new document: the scaled layer alone
    ((256, 192), (40, 30, 96, 64), 2.0, "new_document", None, False,
     Region(40, 30, 96, 64, 80, 60, 192, 128), (0, 0, 96, 64), (192, 128), (0, 0)),
    # a selection counts only with "selection only"
    ((256, 192), (40, 30, 96, 64), 2.0, "resize", (50, 40, 10, 10), False,
     Region(40, 30, 96, 64, 80, 60, 192, 128), (0, 0, 96, 64), (512, 384), (80, 60)),
    # a layer partly off the canvas keeps its (negative) offsets, scaled
    ((100, 80), (-10, -6, 50, 40), 2.0, "resize", None, False,
     Region(-10, -6, 50, 40, -20, -12, 100, 80), (0, 0, 50, 40), (200, 160), (-20, -12)),
    # selection only: its box plus 64 px of context, clipped to the layer
    ((256, 192), (0, 0, 256, 192), 2.0, "resize", (150, 100, 40, 30), True,
     Region(86, 36, 168, 156, 172, 72, 336, 312), (86, 36, 168, 156), (512, 384), (172, 72)),
    # in a new document framed on the selection: the crop's context falls outside the canvas
    ((256, 192), (0, 0, 256, 192), 2.0, "new_document", (150, 100, 40, 30), True,
     Region(86, 36, 168, 156, 172, 72, 336, 312), (86, 36, 168, 156), (80, 60), (172 - 300, 72 - 200)),
    # on an offset layer, layer_read is in the layer's coordinates, the crop (and the mask) in the document's
    ((256, 192), (40, 30, 96, 64), 2.0, "resize", (60, 50, 20, 20), True,
     Region(40, 30, 96, 64, 80, 60, 192, 128), (0, 0, 96, 64), (512, 384), (80, 60)),
    # 1.5x: the crop's edges land on whole pixels of the scaled document
    ((256, 192), (0, 0, 256, 192), 1.5, "resize", (100, 80, 50, 40), True,
     Region(36, 16, 178, 168, 54, 24, 267, 252), (36, 16, 178, 168), (384, 288), (54, 24)),
]


@pytest.mark.parametrize(("doc", "layer", "scale", "target", "selection", "only", "crop", "read", "canvas", "at"),
                         PLANS)
def test_plans(doc, layer, scale, target, selection, only, crop, read, canvas, at):
    got = plan_placement(doc, layer, scale, target, selection, only, "Sky", "balanced")
    assert isinstance(got, Placement)
    assert (got.crop, got.layer_read, got.canvas, got.layer_at) == (crop, read, canvas, at)
    assert got.region_only is only and got.target == target and got.scale == scale


def test_layer_names_say_what_and_how():
    assert plan_placement((10, 10), (0, 0, 10, 10), 2.0, source_name="Sketch").layer_name == \
        "Sketch ×2 Uprez (balanced)"
    named = plan_placement((10, 10), (0, 0, 10, 10), 1.5, "new_document", (1, 1, 3, 3), True, "Sky", "faithful")
    assert named.layer_name == "Sky selection ×1.5 Uprez (faithful)"
    assert plan_placement((10, 10), (0, 0, 10, 10), 2.0, preset=None).layer_name == "image ×2 Uprez"


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"selection_only": True}, "Nothing is selected"),
    ({"selection_only": True, "selection": (700, 10, 20, 20)}, "does not touch this layer"),
    ({"target": "overwrite"}, "resize, new_document"),
    ({"layer": (0, 0, 0, 5)}, "empty"),
])
def test_what_cannot_be_placed_is_refused_with_what_to_do(kwargs, words):
    args = {"doc_size": (600, 512), "layer": (0, 0, 600, 512), "scale": 2.0}
    args.update(kwargs)
    with pytest.raises(PlacementError, match=words):
        plan_placement(**args)
    assert issubclass(PlacementError, ValueError)


layers = st.tuples(st.integers(-60, 60), st.integers(-60, 60), st.integers(1, 300), st.integers(1, 300))
selections = st.tuples(st.integers(-80, 400), st.integers(-80, 400), st.integers(1, 300), st.integers(1, 300))


@given(layer=layers, box=selections, scale=st.sampled_from([1.5, 2.0, 2.5, 3.0, 4.0, 1.25, 2.37]),
       target=st.sampled_from(["resize", "new_document"]))
def test_a_selection_plan_reads_inside_the_layer_covers_the_selection_and_frames_it(layer, box, scale, target):
    ox, oy, w, h = layer
    x, y, bw, bh = box
    try:
        got = plan_placement((300, 300), layer, scale, target, box, True)
    except PlacementError:
        assert x + bw <= ox or x >= ox + w or y + bh <= oy or y >= oy + h  # refused only when apart
        return
    rx, ry, rw, rh = got.layer_read
    assert rx >= 0 and ry >= 0 and rx + rw <= w and ry + rh <= h  # read inside the layer
    assert (got.crop.x, got.crop.y) == (rx + ox, ry + oy)
    # the selection's part over the layer is inside the crop
    assert got.crop.x <= max(x, ox) and got.crop.y <= max(y, oy)
    assert got.crop.x + rw >= min(x + bw, ox + w) and got.crop.y + rh >= min(y + bh, oy + h)
    assert (got.crop.out_width, got.crop.out_height) == scaled_size(rw, rh, scale)
    if target == "resize":
        assert got.layer_at == (scaled(got.crop.x, scale), scaled(got.crop.y, scale))
    else:  # the new canvas is the scaled selection (over the layer), and the crop covers it
        left, top = scaled(max(x, ox), scale), scaled(max(y, oy), scale)
        assert got.layer_at == (got.crop.out_x - left, got.crop.out_y - top)
        assert got.layer_at[0] <= 0 and got.layer_at[1] <= 0
        assert got.layer_at[0] + got.crop.out_width >= got.canvas[0] - 1
        assert got.layer_at[1] + got.crop.out_height >= got.canvas[1] - 1

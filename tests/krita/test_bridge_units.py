"""The Krita bridge's pure parts (no Krita needed), and its Qt shim under both PyQt5 and PyQt6."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugin" / "krita"), str(ROOT / "plugin")]

from uprez_client import options, regions  # noqa: E402
from uprez_krita import form  # noqa: E402
from uprez_krita.formats import PixelFormat, UnsupportedDocument, check_buffer, pixel_format  # noqa: E402
from uprez_krita.plan import make_plan  # noqa: E402

# -- pixels ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "bits", "pixel_bytes"), [("U8", 8, 4), ("U16", 16, 8)])
def test_krita_rgba_integer_pixels_travel_as_bgra_untouched(depth, bits, pixel_bytes):
    fmt = pixel_format("RGBA", depth)
    assert fmt == PixelFormat("BGRA", bits, depth)
    assert fmt.pixel_bytes == pixel_bytes and fmt.buffer_size(3, 2) == 6 * pixel_bytes


@pytest.mark.parametrize(("model", "depth", "words"), [
    ("CMYKA", "U8", "CMYKA"), ("GRAYA", "U16", "GRAYA"), ("LABA", "U16", "LABA"),
    ("RGBA", "F16", "F16"),
])
def test_other_colour_models_and_half_floats_get_a_message_saying_how_to_convert(model, depth, words):
    with pytest.raises(UnsupportedDocument, match="Convert Image Color Space") as caught:
        pixel_format(model, depth)
    assert words in str(caught.value)


def test_krita_float_pixels_travel_as_rgba_float():
    """Krita's RgbF32 colour space stores R, G, B, A (its integer ones B, G, R, A)."""
    assert pixel_format("RGBA", "F32") == PixelFormat("RGBA", 32, "F32")


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("name", ["ClayRGB-elle-V2-g22.icc", "sRGB-elle-V2-g10.icc"])
def test_the_icc_profile_is_read_from_a_tiff(tmp_path, byteorder, name):
    import numpy as np
    import tifffile
    from photo_profiles import profile
    from uprez_krita.profile import icc_from_tiff

    icc = profile(name)
    tifffile.imwrite(tmp_path / "p.tif", np.zeros((1, 1, 4), np.uint16), photometric="rgb", byteorder=byteorder,
                     extrasamples=["unassalpha"], iccprofile=icc)
    assert icc_from_tiff((tmp_path / "p.tif").read_bytes()) == icc
    tifffile.imwrite(tmp_path / "none.tif", np.zeros((1, 1, 3), np.uint8), photometric="rgb")
    assert icc_from_tiff((tmp_path / "none.tif").read_bytes()) is None
    assert icc_from_tiff(b"II*\x00\xff\xff\xff\xff") is None  # damaged: no crash


def test_a_short_buffer_from_krita_is_caught_before_the_engine():
    with pytest.raises(ValueError, match="expected 96"):
        check_buffer(b"\0" * 95, 4, 6, pixel_format("RGBA", "U8"), "layer")


# -- region maths -----------------------------------------------------------------------------------------

boxes = st.tuples(st.integers(-50, 400), st.integers(-50, 400), st.integers(1, 300), st.integers(1, 300))
scales = st.sampled_from([1.5, 2.0, 3.0, 4.0, 2.5, 1.25, 2.37])


@given(box=boxes, size=st.tuples(st.integers(1, 500), st.integers(1, 500)), scale=scales)
def test_a_selection_crop_covers_the_selection_inside_the_image_and_lands_at_its_scaled_place(box, size, scale):
    region = regions.selection_region(box, (0, 0, *size), scale)
    x, y, w, h = box
    inside = (max(x, 0), max(y, 0), min(x + w, size[0]), min(y + h, size[1]))
    if inside[0] >= inside[2] or inside[1] >= inside[3]:
        assert region is None
        return
    assert 0 <= region.x <= inside[0] and 0 <= region.y <= inside[1]
    assert inside[2] <= region.x + region.width <= size[0] and inside[3] <= region.y + region.height <= size[1]
    assert region.x <= max(0, inside[0] - regions.CONTEXT_PX)  # the context margin, where the image has it
    assert (region.out_x, region.out_y) == (regions.scaled(region.x, scale), regions.scaled(region.y, scale))
    assert (region.out_width, region.out_height) == regions.scaled_size(region.width, region.height, scale)


@given(box=boxes, scale=st.sampled_from([1.5, 2.0, 3.0, 4.0, 2.5]))
def test_at_simple_factors_the_crop_edges_land_on_whole_scaled_pixels(box, scale):
    region = regions.selection_region(box, (0, 0, 640, 480), scale)
    if region is None:
        return
    for edge in (region.x, region.y, region.x + region.width, region.y + region.height):
        assert edge * scale == int(edge * scale) or edge in (640, 480)
    # So the crop's scaled size is exactly the distance between its scaled edges: no half-pixel seams.
    assert region.out_x + region.out_width == regions.scaled(region.x + region.width, scale) \
        or region.x + region.width == 640


# -- plans ----------------------------------------------------------------------------------------------------


def test_whole_image_plans_read_everything_and_scale_the_canvas():
    plan = make_plan((600, 512), 1.5, "resize", params={"preset": "creative", "seed": 7})
    assert plan.placement.crop == regions.Region(0, 0, 600, 512, 0, 0, 900, 768)
    assert plan.placement.canvas == (900, 768) and plan.placement.layer_at == (0, 0)
    assert plan.params == {"scale": 1.5, "preset": "creative", "seed": 7}
    assert "region_only" not in plan.params


def test_a_selection_in_resize_mode_lands_at_its_scaled_position_with_region_only():
    plan = make_plan((600, 512), 2.0, "resize", True, (100, 120, 50, 40))
    assert plan.placement.crop == regions.Region(36, 56, 178, 168, 72, 112, 356, 336)
    assert plan.placement.layer_at == (72, 112) and plan.placement.canvas == (1200, 1024)
    assert plan.params["region_only"] is True


def test_a_selection_in_a_new_document_is_framed_on_the_selection():
    plan = make_plan((600, 512), 2.0, "new_document", True, (100, 120, 50, 40))
    assert plan.placement.canvas == (100, 80)
    assert plan.placement.layer_at == (72 - 200, 112 - 240)  # the crop's context falls outside the new canvas


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"selection_only": True}, "Nothing is selected"),
    ({"selection_only": True, "selection_box": (700, 10, 20, 20)}, "does not touch this layer"),
    ({"target": "overwrite"}, "resize, new_document"),
    ({"scale": 1.0}, "more than 1"),
    ({"scale": 20}, "at most 16"),
    ({"params": {"preset": "vivid"}}, "faithful, balanced, creative"),
    ({"params": {"seed": -1}}, "seed"),
])
def test_bad_choices_are_refused_with_a_message(kwargs, words):
    args = {"doc_size": (600, 512), "scale": 2.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        make_plan(**args)


def test_layer_names_say_what_and_how():
    assert make_plan((10, 10), 2.0, source_name="Sketch").placement.layer_name == "Sketch ×2 Uprez (balanced)"
    plan = make_plan((10, 10), 1.5, selection_only=True, selection_box=(1, 1, 3, 3), params={"preset": "faithful"},
                     source_name="Sketch")
    assert plan.placement.layer_name == "Sketch selection ×1.5 Uprez (faithful)"


# -- the dialog's choices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "custom", "expected"), [
    ("2×", "", 2.0), ("1.5×", "", 1.5), ("4×", "", 4.0), ("Custom…", "250%", 2.5), ("Custom…", "3.2x", 3.2),
])
def test_scale_choices_map_to_factors(scale, custom, expected):
    assert form.to_request(form.Choices(scale=scale, custom_scale=custom)).scale == expected


def test_choices_map_to_job_params():
    request = form.to_request(form.Choices(preset="faithful", model="  flux-schnell ", seed=42, prompt=" a cat ",
                                           source="visible", target="new_document", selection_only=True))
    assert request.params == {"preset": "faithful", "model": "flux-schnell", "seed": 42, "prompt": "a cat"}
    assert (request.source, request.target, request.selection_only) == ("visible", "new_document", True)
    assert form.to_request(form.Choices()).params == {"preset": "balanced", "seed": 0}  # model: engine default


@pytest.mark.parametrize("memory", [value for _, value, _ in options.MEMORY_ITEMS if value])
def test_the_chosen_memory_mode_is_sent(memory):
    assert form.to_request(form.Choices(memory=memory)).params == {"preset": "balanced", "seed": 0, "memory": memory}


def test_the_engines_memory_setting_sends_no_memory_param():
    default_value = options.MEMORY_ITEMS[0][1]
    assert default_value is None and form.Choices().memory == ""
    assert "memory" not in form.to_request(form.Choices()).params
    # The labels' values are exactly the engine's modes, so no choice can be one the engine rejects.
    assert [value for _, value, _ in options.MEMORY_ITEMS[1:]] == ["auto", "gpu", "model-offload", "group-offload",
                                                                    "sequential"]


@pytest.mark.parametrize("custom", ["abc", "1", "0.5x", "17", "nan"])
def test_a_bad_custom_scale_says_what_is_accepted(custom):
    with pytest.raises(ValueError, match="scale"):
        form.to_request(form.Choices(scale="Custom…", custom_scale=custom))


def test_random_seeds_fit_the_spin_box():
    import random

    rng = random.Random(1)
    assert all(0 <= form.random_seed(rng) <= form.SEED_MAX for _ in range(100))


# -- the Qt shim, under each binding ----------------------------------------------------------------------------


@pytest.mark.parametrize("binding", ["pyqt5", "pyqt6"])
def test_the_shim_runs_the_dialog_and_cross_thread_signals_under_both_bindings(binding):
    pytest.importorskip("PyQt5" if binding == "pyqt5" else "PyQt6")
    env = dict(os.environ, UPREZ_QT_API=binding, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([str(ROOT / "plugin" / "krita"), str(Path(__file__).parent)]))
    done = subprocess.run([sys.executable, str(Path(__file__).parent / "qt_shim_check.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["api"] == ("PyQt5" if binding == "pyqt5" else "PyQt6")
    assert report["binding_loaded"] == [report["api"]]  # the shim never loads the other binding
    assert report["signal"] == [["from worker", True]]
    assert report["run_enabled_without_document"] is False
    assert report["selection_enabled_without_document"] is False
    assert report["custom_visible"] is True
    assert report["request"]["scale"] == 2.5
    assert report["request"]["params"] == {"preset": "creative", "seed": 1234, "prompt": "a lighthouse at dusk"}
    assert report["memory_labels"] == [label for label, _, _ in options.MEMORY_ITEMS]  # default first: sends nothing
    assert report["memory_params"]["memory"] == "group-offload"
    assert report["loras_tooltip"] == options.LORA_HINT
    assert report["loras_params"]["loras"] == ["detail.safetensors:0.8", "/loras/up.safetensors"]
    assert "loras" not in report["loras_empty_params"]
    assert report["loras_reshown"] == " detail.safetensors:0.8,\n/loras/up.safetensors "
    assert report["request"]["target"] == "new_document" and report["request"]["source"] == "visible"
    assert report["idle_status"] == "Uprez engine idle, model unloaded: loading it for this upscale"  # no error
    assert options.PRESETS[2] == "creative"


# A real interpreter first: pyenv's python3.8 shim fails unless 3.8 is the selected version.
PY38 = next((str(p) for p in Path("/root/.pyenv/versions").glob("3.8*/bin/python")), None) or shutil.which("python3.8")


@pytest.mark.skipif(PY38 is None, reason="no Python 3.8 here (older Krita builds bundle it)")
def test_the_pure_parts_run_on_python_38():
    script = ("import sys; sys.path[:0] = sys.argv[1:3]\n"
              "from uprez_krita import form, plan, formats\n"
              "r = form.to_request(form.Choices(scale='Custom…', custom_scale='150%', selection_only=True,\n"
              "                                     loras='a.safetensors:0.5, b'))\n"
              "p = plan.make_plan((600, 512), r.scale, r.target, True, (100, 100, 50, 50), r.params)\n"
              "print(p.placement.crop, p.placement.canvas, formats.pixel_format('RGBA', 'U16'), r.params['loras'])\n")
    done = subprocess.run([PY38, "-c", script, str(ROOT / "plugin" / "krita"), str(ROOT / "plugin")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Region(x=36, y=36, width=178, height=178, out_x=54, out_y=54, out_width=267, out_height=267)" in done.stdout
    assert "(900, 768)" in done.stdout and "'BGRA', depth=16" in done.stdout
    assert "['a.safetensors:0.5', 'b']" in done.stdout


# -- LoRAs (issue 18): the field's text as the engine's `loras` param ------------------------------------------
def test_typed_loras_are_sent_as_the_loras_param_and_none_sends_nothing():
    request = form.to_request(form.Choices(loras="detail.safetensors:0.8, /loras/up.safetensors"))
    assert request.params == {"preset": "balanced", "seed": 0,
                              "loras": ["detail.safetensors:0.8", "/loras/up.safetensors"]}
    assert "loras" not in form.to_request(form.Choices(loras="  , ")).params
    with pytest.raises(ValueError, match="LoRA weight in 'detail.safetensors:strong' is not a number"):
        form.to_request(form.Choices(loras="detail.safetensors:strong"))


def test_loras_are_remembered_with_the_other_choices():
    chosen = form.Choices(loras="a.safetensors:0.5, b.safetensors")
    assert form.choices_from_text(form.choices_to_text(chosen)).loras == "a.safetensors:0.5, b.safetensors"
    assert form.choices_from_text('{"preset": "creative"}').loras == ""  # saved before the field existed
    assert form.quick_choices(chosen, has_selection=True).loras == chosen.loras  # the quick action uses them too


# -- remembered choices (issue 20): what the dialog keeps per document and the quick action runs ---------------
def test_remembered_choices_round_trip_and_bad_saved_text_falls_back_to_defaults():
    chosen = form.Choices(scale="Custom…", custom_scale="2.5", preset="creative", model="builtin", seed=77,
                          prompt="a cat", source="visible", target="new_document", selection_only=True, memory="gpu")
    assert form.choices_from_text(form.choices_to_text(chosen)) == chosen
    assert form.choices_from_text(None) == form.Choices()
    assert form.choices_from_text("not json") == form.Choices()
    assert form.choices_from_text("[1, 2]") == form.Choices()
    # a field of the wrong type (a settings file from another version) keeps its default, the others are kept
    kept = form.choices_from_text(json.dumps({"seed": "77", "preset": "faithful", "selection_only": 1, "x": 1}))
    assert kept == form.Choices(preset="faithful")
    assert form.choices_from_text(json.dumps({"seed": True})).seed == 0


def test_the_quick_action_runs_the_last_choices_on_the_selection_when_there_is_one():
    last = form.Choices(scale="4×", preset="faithful", seed=3, target="resize", selection_only=False)
    assert form.quick_choices(last, has_selection=True) == last._replace(selection_only=True)
    assert form.quick_choices(last._replace(selection_only=True), has_selection=False).selection_only is False
    request = form.to_request(form.quick_choices(last, has_selection=True))
    assert (request.scale, request.selection_only, request.params["preset"], request.params["seed"]) == \
        (4.0, True, "faithful", 3)

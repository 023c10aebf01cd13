"""The GIMP bridge's parts that need no GIMP: pixel formats, geometry, the procedure's values, messages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from needs import PY38_REASON, needs, python38
from uprez_client import EngineNotRunning, JobCancelled, JobFailed, QueueFull, Unauthorized, options, regions
from uprez_gimp import formats, job, plan, settings

# -- pixel formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("precision", "babl", "depth", "pixel_bytes"), [
    ("u8-non-linear", "R'G'B'A u8", 8, 4),
    ("u8-linear", "R'G'B'A u8", 8, 4),
    ("u8-perceptual", "R'G'B'A u8", 8, 4),
    ("u16-non-linear", "R'G'B'A u16", 16, 8),
    ("GIMP_PRECISION_U16_LINEAR", "R'G'B'A u16", 16, 8),
    ("u32-linear", "R'G'B'A float", 32, 16),
    ("half-non-linear", "R'G'B'A float", 32, 16),
    ("float-linear", "R'G'B'A float", 32, 16),
    ("double-perceptual", "R'G'B'A float", 32, 16),
])
def test_every_gimp_precision_travels_as_srgb_encoded_rgba_at_a_depth_the_engine_takes(precision, babl, depth,
                                                                                       pixel_bytes):
    transfer = formats.transfer_for(precision)
    assert (transfer.babl, transfer.depth, transfer.bytes_per_pixel) == (babl, depth, pixel_bytes)
    assert transfer.size(3, 2) == 6 * pixel_bytes
    assert formats.CHANNELS == "RGBA" and formats.MASK_FORMAT == "Y u8"


def test_an_unknown_precision_is_named_in_the_error():
    with pytest.raises(ValueError, match="'q7-odd'"):
        formats.transfer_for("q7-odd")


def test_samples_are_swapped_to_little_endian_only_on_big_endian_machines():
    data = bytes(range(16))
    assert formats.swap_to_little_endian(data, 16, "little") is data
    assert formats.swap_to_little_endian(data, 8, "big") is data
    swapped16 = formats.swap_to_little_endian(data, 16, "big")
    assert swapped16[:4] == bytes([1, 0, 3, 2])
    assert formats.swap_to_little_endian(data, 32, "big")[:4] == bytes([3, 2, 1, 0])
    assert formats.swap_to_little_endian(swapped16, 16, "big") == data


# -- geometry ---------------------------------------------------------------------------------------------

# image size, layer (x, y, w, h), scale, target, selection (x1, y1, x2, y2) or None, selection only
#   -> read, mask_at, out size, layer position, target image size
PLANS = [
    # the whole layer; the image scales and the result sits at the layer's scaled offsets
    ((256, 192), (40, 30, 96, 64), 2.0, "resize", None, False,
     (0, 0, 96, 64), None, (192, 128), (80, 60), (512, 384)),
    ((256, 192), (40, 30, 96, 64), 2.0, "new-image", None, False,
     (0, 0, 96, 64), None, (192, 128), (0, 0), (192, 128)),
    # a selection is ignored without "selection only"
    ((256, 192), (40, 30, 96, 64), 2.0, "resize", (50, 40, 60, 50), False,
     (0, 0, 96, 64), None, (192, 128), (80, 60), (512, 384)),
    # a layer partly off the canvas keeps its (negative) offsets, scaled
    ((100, 80), (-10, -6, 50, 40), 2.0, "resize", None, False,
     (0, 0, 50, 40), None, (100, 80), (-20, -12), (200, 160)),
    # selection only: its box plus 64 px of context, clipped to the layer
    ((256, 192), (0, 0, 256, 192), 2.0, "resize", (150, 100, 190, 130), True,
     (86, 36, 168, 156), (86, 36), (336, 312), (172, 72), (512, 384)),
    # in a new image framed on the selection (the shared placement): the crop's context falls outside it
    ((256, 192), (0, 0, 256, 192), 2.0, "new-image", (150, 100, 190, 130), True,
     (86, 36, 168, 156), (86, 36), (336, 312), (172 - 300, 72 - 200), (80, 60)),
    # on an offset layer, read is in the layer's coordinates and the mask in the image's
    ((256, 192), (40, 30, 96, 64), 2.0, "resize", (60, 50, 80, 70), True,
     (0, 0, 96, 64), (40, 30), (192, 128), (80, 60), (512, 384)),
    # 1.5x: the crop's edges land on whole pixels of the scaled image (even edges here)
    ((256, 192), (0, 0, 256, 192), 1.5, "resize", (100, 80, 150, 120), True,
     (36, 16, 178, 168), (36, 16), (267, 252), (54, 24), (384, 288)),
]


@pytest.mark.parametrize(("image", "layer", "scale", "target", "selection", "only",
                          "read", "mask_at", "out", "placed", "canvas"), PLANS)
def test_plans(image, layer, scale, target, selection, only, read, mask_at, out, placed, canvas):
    got = plan.make_plan(image, layer, scale, target, selection, only)
    assert got.layer_read == read and ((got.crop.x, got.crop.y) if got.region_only else None) == mask_at
    assert (got.crop.out_width, got.crop.out_height) == out
    assert got.layer_at == placed
    assert got.canvas == canvas


@pytest.mark.parametrize(("selection", "words"), [
    (None, "Nothing is selected"),
    ((200, 150, 250, 190), "does not touch this layer"),
])
def test_selection_only_without_a_usable_selection_says_what_to_do(selection, words):
    with pytest.raises(plan.PlanError, match=words):
        plan.make_plan((256, 192), (0, 0, 100, 80), 2.0, "resize", selection, selection_only=True)


def test_an_unknown_target_is_refused():
    with pytest.raises(plan.PlanError, match="resize, new-image"):
        plan.make_plan((10, 10), (0, 0, 10, 10), 2.0, "new_document")


layers = st.tuples(st.integers(-60, 60), st.integers(-60, 60), st.integers(1, 300), st.integers(1, 300))
selections = st.tuples(st.integers(-80, 400), st.integers(-80, 400), st.integers(1, 300), st.integers(1, 300))


@given(layer=layers, box=selections, scale=st.sampled_from([1.5, 2.0, 2.5, 3.0, 4.0, 1.25, 2.37]),
       target=st.sampled_from(plan.TARGETS))
def test_a_selection_plan_reads_inside_the_layer_covers_the_selection_and_scales_the_crop(layer, box, scale,
                                                                                         target):
    ox, oy, w, h = layer
    x, y, bw, bh = box
    try:
        got = plan.make_plan((300, 300), layer, scale, target, (x, y, x + bw, y + bh), True)
    except plan.PlanError:
        assert x + bw <= ox or x >= ox + w or y + bh <= oy or y >= oy + h  # refused only when apart
        return
    rx, ry, rw, rh = got.layer_read
    assert rx >= 0 and ry >= 0 and rx + rw <= w and ry + rh <= h
    assert (got.crop.x, got.crop.y) == (rx + ox, ry + oy)
    # the selection's part over the layer is inside the crop
    assert rx + ox <= max(x, ox) and ry + oy <= max(y, oy)
    assert rx + ox + rw >= min(x + bw, ox + w) and ry + oy + rh >= min(y + bh, oy + h)
    assert (got.crop.out_width, got.crop.out_height) == regions.scaled_size(rw, rh, scale)
    if target == "resize":
        assert got.layer_at == (regions.scaled(rx + ox, scale), regions.scaled(ry + oy, scale))
    else:  # framed on the selection's part over the layer
        left, top = regions.scaled(max(x, ox), scale), regions.scaled(max(y, oy), scale)
        assert got.layer_at == (got.crop.out_x - left, got.crop.out_y - top)


@pytest.mark.parametrize(("kind", "words"), [
    ((True, False, False, True), "indexed colour.*Image > Mode > RGB"),
    ((True, False, True, False), "grayscale.*Image > Mode > RGB"),
    ((False, False, True, False), "pick a layer"),
])
def test_drawables_the_engine_cannot_take_get_the_menu_item_that_fixes_them(kind, words):
    with pytest.raises(plan.PlanError, match=words):
        plan.check_drawable(*kind)


def test_an_rgb_layer_passes_and_the_new_layer_says_where_it_came_from():
    plan.check_drawable(True, True, False, False)
    assert plan.make_plan((8, 8), (0, 0, 8, 8), 2.0, "resize", source_name="Background").layer_name == \
        "Background ×2 Uprez (balanced)"
    assert plan.make_plan((8, 8), (0, 0, 8, 8), 1.5, "resize", (1, 1, 3, 3), True, "Sky", "faithful").layer_name == \
        "Sky selection ×1.5 Uprez (faithful)"


# -- the procedure's values ---------------------------------------------------------------------------------


def test_dialog_values_become_the_shared_job_params():
    chosen = settings.settings_from(2, "creative", "  builtin ", 7, "  a red barn ", "new-image", True)
    assert chosen.params == options.job_params(2.0, "creative", "builtin", 7, "a red barn")
    assert chosen.params == {"scale": 2.0, "preset": "creative", "seed": 7, "model": "builtin",
                             "prompt": "a red barn"}
    assert (chosen.scale, chosen.target, chosen.selection_only) == (2.0, "new-image", True)
    assert settings.settings_from(1.5, "balanced").params == {"scale": 1.5, "preset": "balanced", "seed": 0}


@pytest.mark.parametrize(("values", "words"), [
    ((1.0, "balanced"), "more than 1"),
    ((2.0, "wild"), "faithful, balanced, creative"),
    ((2.0, "balanced", "", 0, "", "everywhere"), "resize, new-image"),
])
def test_bad_values_from_a_script_get_a_message_before_anything_is_read(values, words):
    with pytest.raises(plan.PlanError, match=words):
        settings.settings_from(*values)


def test_the_procedures_ranges_are_the_engines():
    assert 1.0 < settings.MIN_SCALE < min(options.SCALES)
    assert settings.MAX_SCALE == options.MAX_SCALE and settings.DEFAULT_SCALE in options.SCALES
    assert settings.MAX_GIMP_SEED == 2**31 - 1 <= options.MAX_SEED
    assert [nick for nick, _, _ in settings.preset_choices()] == list(options.PRESETS)
    assert all(hint == options.PRESET_HINTS[nick] for nick, _, hint in settings.preset_choices())
    assert settings.MENU_PATH == "<Image>/Filters/Enhance" and settings.PROCEDURE == "plug-in-uprez-upscale"


# -- messages ---------------------------------------------------------------------------------------------------


def test_failure_messages_say_what_to_do():
    not_running = job.explain(EngineNotRunning("no Uprez engine answers at http://127.0.0.1:9 (refused); start it "
                                               "with `uprez serve`, or set UPREZ_URL to where it runs"))
    assert "`uprez serve`" in not_running and "Filters > Enhance > Upscale with Uprez again" in not_running
    assert "UPREZ_CONFIG_DIR" in job.explain(Unauthorized("bad token", 401))
    assert "about 12 s" in job.explain(QueueFull("full", 429, 12.0))
    assert "unchanged" in job.explain(JobCancelled("cancelled by the user"))
    assert job.explain(JobFailed("the scale is too large for 8 GB; pick 2x")) == \
        "Uprez: the scale is too large for 8 GB; pick 2x"


# -- standard library only, Python 3.8 -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugin" / "gimp" / "uprez-upscale"
PY38 = python38()


@needs(PY38, "python3.8", PY38_REASON)
def test_the_pure_parts_import_and_plan_on_python_38_without_gi():
    code = ("import sys; sys.modules['gi'] = None\n"  # any `import gi` would fail loudly
            "from uprez_gimp import clientpath, formats, job, plan, settings\n"
            "p = plan.make_plan((256, 192), (0, 0, 256, 192), 1.5, 'resize', (100, 80, 150, 120), True)\n"
            "s = settings.settings_from(1.5, 'faithful')\n"
            "print(p.layer_read, p.crop.out_width, formats.transfer_for('u16-linear').babl, s.params['preset'])\n")
    out = subprocess.run([str(PY38), "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": f"{PLUGIN_DIR}:{ROOT / 'plugin'}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(36, 16, 178, 168) 267 R'G'B'A u16 faithful"
    compiled = subprocess.run([str(PY38), "-m", "py_compile", str(PLUGIN_DIR / "uprez-upscale.py")],
                              capture_output=True, text=True, timeout=60)
    assert compiled.returncode == 0, compiled.stderr


def test_pure_parts_use_nothing_but_the_standard_library_and_the_client():
    allowed = set(sys.stdlib_module_names) | {"uprez_client", "uprez_gimp"}
    for path in (PLUGIN_DIR / "uprez_gimp").glob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and not words[1].startswith("."):
                assert words[1].split(".")[0] in allowed, f"{path.name}: {line}"


# -- how the plug-in finds its client, installed and in a checkout ------------------------------------------


def test_the_client_copy_beside_an_installed_plug_in_wins_over_a_checkout(tmp_path):
    from uprez_gimp import clientpath

    checkout = tmp_path / "plugin"
    folder = checkout / "gimp" / "uprez-upscale"
    for client in (checkout / "uprez_client", folder / "uprez_client"):
        client.mkdir(parents=True)
        (client / "__init__.py").write_text("")
    assert clientpath.client_folder(str(folder)) == str(folder)
    (folder / "uprez_client" / "__init__.py").unlink()
    assert clientpath.client_folder(str(folder)) == str(checkout)
    (checkout / "uprez_client" / "__init__.py").unlink()
    assert clientpath.client_folder(str(folder)) is None
    with pytest.raises(ImportError, match="reinstall the plug-in"):
        clientpath.use_client(str(folder))


def test_this_checkouts_plug_in_finds_the_shared_client_two_folders_up():
    from uprez_gimp import clientpath

    assert clientpath.client_folder(str(PLUGIN_DIR)) == str(ROOT / "plugin")


def test_gimp_can_run_the_plug_in_file():
    """GIMP 3 runs plug-ins/NAME/NAME.py only when it is executable and says which interpreter to use."""
    script = PLUGIN_DIR / "uprez-upscale.py"
    assert script.stat().st_mode & 0o111 == 0o111
    assert script.read_text(encoding="utf-8").splitlines()[0] == "#!/usr/bin/env python3"


def test_the_gpu_memory_choice_is_sent_and_the_engines_own_sends_nothing():
    nicks = [nick for nick, _, _ in settings.memory_choices()]
    assert nicks == [settings.ENGINE_MEMORY, "auto", "gpu", "model-offload", "group-offload", "sequential"]
    for nick in nicks[1:]:
        assert settings.settings_from(2, "balanced", memory=nick).params["memory"] == nick
    assert "memory" not in settings.settings_from(2, "balanced", memory=settings.ENGINE_MEMORY).params
    assert "memory" not in settings.settings_from(2, "balanced").params



def test_the_loras_argument_is_sent_as_the_loras_param_only_when_given():
    chosen = settings.settings_from(2, "balanced", loras=" detail.safetensors:0.8,\n/loras/up.safetensors ")
    assert chosen.params["loras"] == ["detail.safetensors:0.8", "/loras/up.safetensors"]
    assert chosen.params["loras"] == options.parse_loras("detail.safetensors:0.8, /loras/up.safetensors")
    for nothing in ("", "  , ", None):
        assert "loras" not in settings.settings_from(2, "balanced", loras=nothing).params
    with pytest.raises(plan.PlanError, match="LoRA weight in 'detail.safetensors:9' must be from -4 to 4"):
        settings.settings_from(2, "balanced", loras="detail.safetensors:9")


def test_the_loras_argument_is_registered_last_and_shown_in_the_dialog():
    """Scripts pass the procedure's arguments by position: a new one goes after all the others."""
    source = (PLUGIN_DIR / "uprez-upscale.py").read_text(encoding="utf-8")
    body = source[source.index("def add_arguments"):source.index("add_layer_return_value")]
    names = re.findall(r'add_\w+_argument\(\s*"([\w-]+)"', body)
    assert names[-1] == "loras" and names[:-1] == ["scale", "preset", "model", "seed", "prompt", "target",
                                                    "selection-only", "upsampler", "memory"]
    assert '"loras", "LoRAs", settings.LORA_HINT' in body
    fields = source[source.index("DIALOG_FIELDS = ("):source.index(")", source.index("DIALOG_FIELDS = ("))]
    assert '"loras"' in fields
    assert 'config.get_property("loras")' in source


# -- the model list's pure part (issue 20) -----------------------------------------------------------------------
def test_a_model_list_choice_stands_for_the_model_and_upsampler_arguments(builtin_engine, monkeypatch):
    from uprez_client.options import choice_key
    from uprez_gimp import model_field

    assert model_field.chosen(choice_key("builtin", "/m/x4.pth"), "") == ("builtin", "/m/x4.pth")
    assert model_field.chosen("", "") == ("", "")  # "Engine default"
    assert model_field.chosen(None, "  my/model  ") == ("my/model", "")  # typed
    assert model_field.current_key("builtin", "/m/x4.pth") == choice_key("builtin", "/m/x4.pth")
    assert model_field.current_key("", "") == ""
    monkeypatch.setenv("UPREZ_URL", "http://127.0.0.1:9")
    choices, note = model_field.fetch_choices()
    assert choices == [] and "type a model" in note  # no engine: the field only takes typing, and says why
    monkeypatch.setenv("UPREZ_URL", builtin_engine.url)
    choices, note = model_field.fetch_choices()
    assert note is None and choices[0][0].startswith("Built-in flow model")

"""Runs inside GIMP 3 (gimp-console, python-fu-eval; see run-in-trixie.sh): drives plug-in-uprez-upscale through
the PDB, non-interactively, against the real engine the runner started, and writes every check's outcome to
$UPREZ_GIMP_TESTS/results.json. Standard library only: GIMP's Python has no numpy."""

import json
import os
import sys
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

TESTS = os.environ["UPREZ_GIMP_TESTS"]
PLUGIN = os.path.join(Gimp.directory(), "plug-ins", "uprez-upscale")
sys.path.insert(0, PLUGIN)  # the client copy the installed plug-in carries
from uprez_client import Client  # noqa: E402

U8, U16, FLOAT, MASK = "R'G'B'A u8", "R'G'B'A u16", "R'G'B'A float", "Y u8"
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append({"check": name, "ok": bool(ok), "detail": str(detail)[:800]})


# -- building images ------------------------------------------------------------------------------------------


def card(width, height, seed=0):
    """RGBA u8 bytes: gradients, a checker and a diagonal edge, so an upscaler has something to do."""
    out = bytearray(width * height * 4)
    for y in range(height):
        for x in range(width):
            i = (y * width + x) * 4
            checker = ((x // 8 + y // 8 + seed) % 2) * 120
            out[i] = (x * 255 // max(width - 1, 1)) & 255
            out[i + 1] = (y * 255 // max(height - 1, 1)) & 255
            out[i + 2] = (checker + (90 if x > y else 0)) & 255
            out[i + 3] = 255
    return bytes(out)


def new_image(width, height, precision=Gimp.Precision.U8_NON_LINEAR, base=Gimp.ImageBaseType.RGB):
    image = Gimp.Image.new_with_precision(width, height, base, precision)
    kind = {Gimp.ImageBaseType.RGB: Gimp.ImageType.RGB_IMAGE, Gimp.ImageBaseType.GRAY: Gimp.ImageType.GRAY_IMAGE,
            Gimp.ImageBaseType.INDEXED: Gimp.ImageType.INDEXED_IMAGE}[base]
    layer = Gimp.Layer.new(image, "Background", width, height, kind, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    if base == Gimp.ImageBaseType.RGB:
        put(layer, card(width, height), U8)
    return image, layer


def add_layer(image, name, x, y, width, height):
    layer = Gimp.Layer.new(image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(x, y)
    put(layer, card(width, height, seed=1), U8)
    return layer


def put(drawable, data, fmt):
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()), fmt, data)
    buffer.flush()


def pixels(drawable, fmt, rect=None):
    x, y, w, h = rect or (0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def selection_mask(image, rect):
    x, y, w, h = rect
    return bytes(image.get_selection().get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, MASK,
                                                        Gegl.AbyssPolicy.NONE))


def snapshot(image):
    """What "unchanged" means for an image: size, layer stack, every layer's place and bytes."""
    layers = [(layer.get_name(), layer.get_offsets()[1:], layer.get_width(), layer.get_height(),
               pixels(layer, U16)) for layer in image.get_layers()]
    return image.get_width(), image.get_height(), str(image.get_precision()), layers


# -- running the procedure ------------------------------------------------------------------------------------


def upscale(image, drawable, **arguments):
    """Call plug-in-uprez-upscale as a script would; returns (status, error message, new layer or None)."""
    pdb = Gimp.get_pdb()
    procedure = pdb.lookup_procedure("plug-in-uprez-upscale")
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [drawable])
    for name, value in arguments.items():
        config.set_property(name.replace("_", "-"), value)
    result = procedure.run(config)
    status = result.index(0)
    if status == Gimp.PDBStatusType.SUCCESS:
        return status, "", result.index(1)
    return status, pdb.get_last_error() or "", None


def reference(data, width, height, depth, mask=None, **params):
    """The engine's answer for the same pixels and settings, asked directly: the plug-in must match it."""
    client = Client()
    if mask is not None:
        params["region_only"] = True
    out, _ = client.upscale_raw(data, width, height, "RGBA", depth, mask=mask, **params)
    return out


def samples(data, depth):
    if depth == 8:
        return data
    import array
    values = array.array("H" if depth == 16 else "f")
    values.frombytes(data)
    return values


def alpha_at(data, depth, width, x, y):
    top = {8: 255, 16: 65535, 32: 1.0}[depth]
    return samples(data, depth)[(y * width + x) * 4 + 3] / top


# -- scenarios ------------------------------------------------------------------------------------------------


def resize_whole_layer_8bit():
    image, background = new_image(256, 192)
    detail = add_layer(image, "Detail", 40, 30, 96, 64)
    before = pixels(detail, U8)
    plain = image.duplicate()
    plain.scale(512, 384)  # what GIMP's own scaling makes of the untouched layers
    status, error, layer = upscale(image, detail, scale=2.0, preset="balanced", seed=5, target="resize",
                                   selection_only=False)
    check("A resize 8-bit: the procedure succeeds", status == Gimp.PDBStatusType.SUCCESS, error)
    if layer is None:
        return
    check("A resize 8-bit: the image is scaled to 512x384", (image.get_width(), image.get_height()) == (512, 384),
          (image.get_width(), image.get_height()))
    names = [item.get_name() for item in image.get_layers()]
    check("A resize 8-bit: the result sits right above the source", names == ["Detail ×2 Uprez (balanced)", "Detail",
                                                                              "Background"], names)
    check("A resize 8-bit: result 192x128 at (80, 60)",
          (layer.get_width(), layer.get_height(), tuple(layer.get_offsets()[1:])) == (192, 128, (80, 60)),
          (layer.get_width(), layer.get_height(), layer.get_offsets()))
    expected = reference(before, 96, 64, 8, scale=2.0, preset="balanced", seed=5)
    check("A resize 8-bit: the result is the engine's upscale of the layer, byte for byte",
          pixels(layer, U8) == expected)
    scaled_plain = {item.get_name(): item for item in plain.get_layers()}
    for item in (detail, background):
        twin = scaled_plain[item.get_name()]
        check(f"A resize 8-bit: {item.get_name()} is only scaled by GIMP, never written",
              pixels(item, U8) == pixels(twin, U8) and item.get_offsets()[1:] == twin.get_offsets()[1:])
    plain.delete()
    image.delete()


def new_image_selection_8bit():
    image, background = new_image(256, 192)
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 150, 100, 40, 30)
    bounds = tuple(Gimp.Selection.bounds(image))[1:]
    check("B selection: the ellipse's bounds", bounds == (True, 150, 100, 190, 130), bounds)
    crop = (86, 36, 168, 156)  # the bounds plus 64 px of context, clipped to the image
    source, mask = pixels(background, U8, crop), selection_mask(image, crop)
    before, images_before = snapshot(image), len(Gimp.get_images())
    plain = image.duplicate()
    plain.scale(512, 384)
    status, error, layer = upscale(image, background, scale=2.0, preset="balanced", seed=0, target="new-image",
                                   selection_only=True)
    check("B selection: the procedure succeeds", status == Gimp.PDBStatusType.SUCCESS, error)
    if layer is None:
        return
    result = layer.get_image()
    check("B selection: one new image, the source image unchanged",
          result != image and len(Gimp.get_images()) == images_before + 2 and snapshot(image) == before)
    # The shared placement frames a new image on the selection (40x30 -> 80x60); the crop's context lies outside.
    check("B selection: the new image is the selection's 80x60, its layer the region's 336x312 at (-128, -128)",
          (result.get_width(), result.get_height(), layer.get_width(), layer.get_height(),
           tuple(layer.get_offsets()[1:])) == (80, 60, 336, 312, (-128, -128)),
          (result.get_width(), result.get_height(), layer.get_offsets()))
    got = pixels(layer, U8)
    check("B selection: the result is the engine's region upscale with the mask, byte for byte",
          got == reference(source, 168, 156, 8, mask, scale=2.0, preset="balanced", seed=0))
    outside = inside = 0
    wrong = []
    changed = []
    plain_crop = pixels(plain.get_layers()[0], U8, (172, 72, 336, 312))
    for y in range(312):
        for x in range(336):
            # the output pixel's centre in the image, against the ellipse: < 1 inside
            ex = (((x + 0.5) / 2 + 86 - 170) / 20) ** 2 + (((y + 0.5) / 2 + 36 - 115) / 15) ** 2
            a = got[(y * 336 + x) * 4 + 3]
            if ex > 1.8:  # beyond the reach of the mask resampling kernel (a few pixels)
                outside += 1
                if a != 0:
                    wrong.append((x, y, round(ex, 2), a))
            elif ex < 0.5:
                inside += 1
                if a != 255:
                    wrong.append((x, y, round(ex, 2), a))
                i = (y * 336 + x) * 4
                changed.append(sum(abs(got[i + c] - plain_crop[i + c]) for c in range(3)) / 3)
    check("B selection: transparent outside the selection, opaque inside", not wrong and outside > 0 and inside > 0,
          f"{len(wrong)} wrong of {outside} outside + {inside} inside: {wrong[:20]}")
    mean = sum(changed) / max(len(changed), 1)
    check("B selection: inside, the model redrew the plain GIMP resize (mean change 1-40 levels)", 1 < mean < 40,
          f"mean change {mean:.2f}")
    plain.delete()
    result.delete()
    image.delete()


def resize_selection_16bit():
    image, background = new_image(256, 192, Gimp.Precision.U16_NON_LINEAR)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 100, 80, 50, 40)
    crop = (36, 16, 178, 168)  # edges even, so that they land on whole pixels at 1.5x
    source, mask = pixels(background, U16, crop), selection_mask(image, crop)
    before = pixels(background, U16)
    plain = image.duplicate()
    plain.scale(384, 288)
    status, error, layer = upscale(image, background, scale=1.5, preset="faithful", seed=2, target="resize",
                                   selection_only=True)
    check("C 16-bit: the procedure succeeds", status == Gimp.PDBStatusType.SUCCESS, error)
    if layer is None:
        return
    check("C 16-bit: the image is scaled to 384x288 and stays 16-bit",
          (image.get_width(), image.get_height(), image.get_precision()) == (384, 288, Gimp.Precision.U16_NON_LINEAR))
    check("C 16-bit: the region's result is 267x252 at (54, 24)",
          (layer.get_width(), layer.get_height(), tuple(layer.get_offsets()[1:])) == (267, 252, (54, 24)),
          (layer.get_width(), layer.get_height(), layer.get_offsets()))
    got = pixels(layer, U16)
    check("C 16-bit: the result is the engine's 16-bit region upscale, byte for byte",
          got == reference(source, 178, 168, 16, mask, scale=1.5, preset="faithful", seed=2))
    check("C 16-bit: transparent far outside the selection, opaque in its middle",
          alpha_at(got, 16, 267, 0, 0) == 0 and alpha_at(got, 16, 267, 133, 126) == 1.0)
    check("C 16-bit: the source layer is only scaled by GIMP",
          pixels(background, U16) == pixels(plain.get_layers()[0], U16) and before != pixels(background, U16))
    plain.delete()
    image.delete()


def new_image_float():
    image, background = new_image(64, 48, Gimp.Precision.FLOAT_NON_LINEAR)
    source, before = pixels(background, FLOAT), snapshot(image)
    status, error, layer = upscale(image, background, scale=2.0, preset="balanced", seed=1, target="new-image",
                                   selection_only=False)
    check("D float: the procedure succeeds", status == Gimp.PDBStatusType.SUCCESS, error)
    if layer is None:
        return
    result = layer.get_image()
    check("D float: a 128x96 float image", (result.get_width(), result.get_height(), result.get_precision()) ==
          (128, 96, Gimp.Precision.FLOAT_NON_LINEAR))
    got, expected = samples(pixels(layer, FLOAT), 32), samples(reference(source, 64, 48, 32, scale=2.0,
                                                                         preset="balanced", seed=1), 32)
    worst = max(abs(a - b) for a, b in zip(got, expected, strict=True)) if len(got) == len(expected) else "sizes"
    check("D float: the result is the engine's float upscale", worst == 0, worst)
    check("D float: the source image is unchanged", snapshot(image) == before)
    result.delete()
    image.delete()


def muted_card(width, height):
    """RGBA u16 bytes of `card`, squeezed to 0.4-0.6 so every colour lies inside sRGB in any profile."""
    import array

    values = array.array("H", [round(65535 * (0.4 + 0.2 * v / 255)) if i % 4 != 3 else 65535
                               for i, v in enumerate(card(width, height))])
    return values.tobytes()


def psnr16(a, b):
    """PSNR in dB of two R'G'B'A u16 buffers over their colour samples."""
    import math

    x, y = samples(a, 16), samples(b, 16)
    total = count = 0
    for i in range(len(x)):
        if i % 4 != 3:
            total += ((x[i] - y[i]) / 65535) ** 2
            count += 1
    return math.inf if total == 0 else 10 * math.log10(count / total)


def non_srgb_image():
    """A 16-bit image in ClayRGB (Adobe RGB compatible): the plug-in sends the image's profile with its pixels
    and the result matches converting to sRGB (GIMP's own conversion), upscaling, and converting back."""
    gi.require_version("Gio", "2.0")
    from gi.repository import Gio

    path = os.path.join(TESTS, "ClayRGB-elle-V2-g22.icc")
    if not os.path.exists(path):
        check("H profile: ClayRGB-elle-V2-g22.icc was copied in (Krita's package provides it)", False, path)
        return
    clay = Gimp.ColorProfile.new_from_file(Gio.File.new_for_path(path))
    image, background = new_image(64, 48, Gimp.Precision.U16_NON_LINEAR)
    image.set_color_profile(clay)  # assigned: the same numbers now mean ClayRGB colours
    gi.require_version("Babl", "0.1")
    from gi.repository import Babl

    own = Babl.get_name(Babl.format_with_space(U16, background.get_format()))  # R'G'B'A u16 in ClayRGB
    put(background, muted_card(64, 48), own)
    args = dict(scale=2.0, preset="balanced", seed=3, target="new-image", selection_only=False)
    status, error, layer = upscale(image, background, **args)
    check("H profile: the procedure succeeds", status == Gimp.PDBStatusType.SUCCESS, error)
    if layer is None:
        return
    result = layer.get_image()
    check("H profile: the new image has the source's profile",
          result.get_color_profile() is not None and result.get_color_profile().is_equal(clay))
    copy = image.duplicate()
    copy.convert_color_profile(Gimp.ColorProfile.new_rgb_srgb(), Gimp.ColorRenderingIntent.RELATIVE_COLORIMETRIC,
                               False)
    status, error, by_hand = upscale(copy, copy.get_layers()[0], **args)
    check("H profile: the by-hand run succeeds", status == Gimp.PDBStatusType.SUCCESS, error)
    if by_hand is None:
        return
    by_hand_image = by_hand.get_image()
    by_hand_image.convert_color_profile(clay, Gimp.ColorRenderingIntent.RELATIVE_COLORIMETRIC, False)
    shown, expected = pixels(layer, U16), pixels(by_hand_image.get_layers()[0], U16)  # U16: sRGB, as shown
    value = psnr16(shown, expected)
    check("H profile: matches convert to sRGB, upscale, convert back (>= 45 dB, as shown)", value >= 45, value)
    unmanaged = reference(pixels(background, own), 64, 48, 16, **args_params(args))
    plain = psnr16(unmanaged, pixels(by_hand_image.get_layers()[0], own))
    check("H profile: without the profile the result is further off", plain < value - 6, (plain, value))
    for item in (result, copy, by_hand_image, image):
        item.delete()

    # A ClayRGB green outside sRGB: converting to plain sRGB (what babl did before the profile travelled)
    # would clip it and bring it back with red 0.48 instead of 0.15.
    image, background = new_image(32, 32, Gimp.Precision.U16_NON_LINEAR)
    image.set_color_profile(clay)
    import array

    green = array.array("H", [9830, 55705, 9830, 65535] * (32 * 32)).tobytes()  # 0.15, 0.85, 0.15
    put(background, green, own)
    status, error, layer = upscale(image, background, **args)
    check("H profile: the out-of-gamut green run succeeds", status == Gimp.PDBStatusType.SUCCESS, error)
    if layer is not None:
        got = samples(pixels(layer, own, (24, 24, 16, 16)), 16)
        worst = max(abs(got[i] / 65535 - (0.15, 0.85, 0.15)[i % 4]) for i in range(len(got)) if i % 4 != 3)
        check("H profile: a ClayRGB green outside sRGB keeps its colour (within 0.03)", worst < 0.03, worst)
        layer.get_image().delete()
    image.delete()


def args_params(args):
    return {"scale": args["scale"], "preset": args["preset"], "seed": args["seed"]}


def cancelled_by_killing_the_plug_in():
    """The runner's watcher kills the plug-in (as GIMP does on a progress cancel) once its job runs."""
    image, background = new_image(512, 512)
    before, images_before = snapshot(image), len(Gimp.get_images())
    status, error, layer = upscale(image, background, scale=2.0, preset="creative", seed=4242, target="new-image",
                                   selection_only=False)
    check("F killed: the procedure reports the plug-in's end", status != Gimp.PDBStatusType.SUCCESS,
          f"{status} {error}")
    check("F killed: the image is unchanged and no image was added",
          snapshot(image) == before and len(Gimp.get_images()) == images_before)
    image.delete()


def dialog_renders():
    """The interactive dialog, built by the plug-in's own make_dialog, shown on the runner's Xvfb display."""
    import importlib.util

    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk, GimpUi, Gtk

    spec = importlib.util.spec_from_file_location("uprez_upscale_plugin", os.path.join(PLUGIN, "uprez-upscale.py"))
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)  # its Gimp.main() only runs when GIMP starts it as a program
    GimpUi.init("uprez-dialog-check")
    procedure = Gimp.get_pdb().lookup_procedure("plug-in-uprez-upscale")
    dialog = plugin.make_dialog(procedure, procedure.create_config())
    dialog.show_all()
    for _ in range(100):
        while Gtk.events_pending():
            Gtk.main_iteration()
    labels = []

    def walk(widget):
        if isinstance(widget, Gtk.Label):
            labels.append(widget.get_text())
        if isinstance(widget, Gtk.Container):
            for child in widget.get_children():
                walk(child)

    walk(dialog)
    wanted = ["Upscale model", "Scale", "Preset", "GPU memory", "LoRAs", "Seed", "Prompt", "Result", "Selection only",
              "Cancel", "OK"]
    check("G dialog: shows the settings in order, the model as one list, nothing else of the procedure's",
          [label for label in labels if label in wanted] == wanted and "Run mode" not in labels
          and "SR model, then refine with the model" not in labels, labels)
    # The model list is the engine's (GET /v1/models), its kinds told apart; choosing binds the arguments.
    combo = dialog.uprez_model_combo
    items, row = [], combo.get_model().get_iter_first()
    while row is not None:
        items.append((combo.get_model().get_value(row, 1), combo.get_model().get_value(row, 0)))
        row = combo.get_model().iter_next(row)
    listed = Client().models()["models"]
    flow = [m for m in listed if m.get("kind") not in ("sr", "builtin")]
    sr = [m for m in listed if m.get("kind") == "sr"]
    check("G dialog: the model list holds the engine default, the built-in model, flow and SR models and the "
          "SR-then-refine pairs, told apart", flow and sr and items[0][1] == "Engine default"
          and any(label.startswith("Built-in flow model") for _, label in items)
          and any(label.startswith("Flow model: ") for _, label in items)
          and any(label.startswith("SR model: ") and "on its own" in label for _, label in items)
          and any(", then refine with " in label for _, label in items)
          and len(items) == 1 + 1 + len(flow) + len(sr) + len(sr) * (1 + len(flow)), items)
    config = procedure.create_config()
    bound = plugin.make_dialog(procedure, config, (plugin.model_field.fetch_choices()))
    pair = next(key for key, label in items if ", then refine with " in label)
    bound.uprez_model_combo.set_active_id(pair)
    model, upsampler = config.get_property("model"), config.get_property("upsampler")
    bound.uprez_model_combo.get_child().set_text("my/typed-model")
    typed = config.get_property("model"), config.get_property("upsampler")
    check("G dialog: choosing 'SR model, then refine' sets the model and upsampler arguments; typing sets the model",
          "\t".join((upsampler, model)) == pair and typed == ("my/typed-model", ""), (pair, model, upsampler, typed))
    bound.destroy()
    combo.set_active_id(pair)
    for _ in range(50):
        while Gtk.events_pending():
            Gtk.main_iteration()
    window = dialog.get_window()
    shot = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
    shot.savev(os.path.join(TESTS, "dialog.png"), "png", [], [])
    combo.popup()  # the list open, for docs/gimp-dialog-models.png
    for _ in range(100):
        while Gtk.events_pending():
            Gtk.main_iteration()
        time.sleep(0.01)
    root = Gdk.get_default_root_window()
    shot = Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
    shot.savev(os.path.join(TESTS, "dialog-models.png"), "png", [], [])
    combo.popdown()
    dialog.destroy()


def preview_during_a_run():
    """The engine's previews go to a temporary image of their own (the plug-in's preview window, here without a
    display), never into the image being upscaled, and it is gone when the run ends."""
    sys.path.insert(0, PLUGIN)
    import uprez_gimp_ui as preview
    from gi.repository import Gio
    from uprez_gimp import formats, job

    image, layer = new_image(192, 128)
    before, images_before = snapshot(image), len(Gimp.get_images())
    window = preview.PreviewWindow(show=False)
    seen = []

    def on_preview(png):
        window.update(png)
        shown = window.image
        seen.append({"images": len(Gimp.get_images()), "layers": [item.get_name() for item in shown.get_layers()],
                     "size": (shown.get_width(), shown.get_height()), "untouched": snapshot(image) == before,
                     "undo_enabled": shown.undo_is_enabled()})
        if len(seen) == 2:  # the preview image's content mid-run, for docs/gimp-preview.png
            saved = Gio.File.new_for_path(os.path.join(TESTS, "preview.png"))
            Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, shown, saved, None)

    transfer = formats.transfer_for(image.get_precision().value_nick)
    try:
        _, width, height = job.run_job(Client(), pixels(layer, U8), 192, 128, transfer,
                                       {"scale": 2.0, "preset": "creative", "steps": 4, "seed": 1, "preview_every": 1},
                                       on_preview=on_preview)
    finally:
        window.close()
    check("I preview: the engine's previews arrived and were shown", len(seen) >= 2 and window.updates >= 2, seen)
    own = [s["images"] == images_before + 1 and s["layers"] == ["Uprez preview"] and s["untouched"]
           and not s["undo_enabled"] for s in seen]
    check("I preview: in an image of their own (one more image, one 'Uprez preview' layer, undo off), the upscaled "
          "image untouched meanwhile", own and all(own), seen)
    check("I preview: gone when the run ends, the image as it was", len(Gimp.get_images()) == images_before
          and snapshot(image) == before and (width, height) == (384, 256))
    image.delete()


def open_in_window():
    """Filters > Enhance > Open in Uprez window: the layer goes, as a PNG, to the window command of bridge.json."""
    config = os.environ["UPREZ_CONFIG_DIR"]
    target = os.path.join(TESTS, "opened.png")
    with open(os.path.join(config, "bridge.json"), "w", encoding="utf-8") as f:
        json.dump({"gui_command": ["/bin/sh", "-c", 'cp "$1" "$0"', target]}, f)
    image, layer = new_image(40, 30)
    before = snapshot(image)
    try:
        procedure = Gimp.get_pdb().lookup_procedure("plug-in-uprez-open-in-window")
        config_ = procedure.create_config()
        config_.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
        config_.set_property("image", image)
        config_.set_core_object_array("drawables", [layer])
        status = procedure.run(config_).index(0)
        for _ in range(100):
            if os.path.exists(target):
                break
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        os.remove(os.path.join(config, "bridge.json"))
    with open(target, "rb") as f:
        png = f.read()
    import struct
    import zlib
    width, height, depth = struct.unpack(">IIB", png[16:25])
    idat = b"".join(png[i + 8:i + 8 + struct.unpack(">I", png[i:i + 4])[0]]
                    for i in [j - 4 for j in range(len(png)) if png[j:j + 4] == b"IDAT"])
    rows = zlib.decompress(idat)
    body = b"".join(rows[y * (40 * 4 + 1) + 1:(y + 1) * (40 * 4 + 1)] for y in range(30))
    check("J window: the layer went to the window as a 40x30 8-bit PNG with its exact pixels, the image unchanged",
          status == Gimp.PDBStatusType.SUCCESS and (width, height, depth) == (40, 30, 8)
          and body == pixels(layer, U8) and snapshot(image) == before, (status, width, height, depth))
    image.delete()


def refusals_with_no_engine():
    """With the engine gone (engine.json points at a closed port), and for images it cannot take."""
    config = os.environ["UPREZ_CONFIG_DIR"]
    path = os.path.join(config, "engine.json")
    with open(path, encoding="utf-8") as f:
        original = f.read()
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"url": "http://127.0.0.1:9"}, f)
    try:
        cases = []
        image, layer = new_image(64, 48)
        cases.append(("E no engine", image, layer, {}, Gimp.PDBStatusType.EXECUTION_ERROR, "`uprez serve`"))
        image, layer = new_image(64, 48, base=Gimp.ImageBaseType.GRAY)
        cases.append(("E grayscale", image, layer, {}, Gimp.PDBStatusType.CALLING_ERROR, "Image > Mode > RGB"))
        image, layer = new_image(64, 48, base=Gimp.ImageBaseType.INDEXED)
        cases.append(("E indexed", image, layer, {}, Gimp.PDBStatusType.CALLING_ERROR, "Image > Mode > RGB"))
        image, layer = new_image(64, 48)
        cases.append(("E empty selection", image, layer, {"selection_only": True}, Gimp.PDBStatusType.CALLING_ERROR,
                      "Nothing is selected"))
        image, layer = new_image(64, 48)  # the `loras` argument (the last) is read before anything is sent
        cases.append(("E bad LoRA weight", image, layer, {"loras": "a.safetensors, detail.safetensors:9"},
                      Gimp.PDBStatusType.CALLING_ERROR, "LoRA weight in 'detail.safetensors:9' must be from -4 to 4"))
        for name, image, layer, extra, expected_status, words in cases:
            before, images_before = snapshot(image), len(Gimp.get_images())
            status, error, _ = upscale(image, layer, **dict({"scale": 2.0, "target": "resize"}, **extra))
            check(f"{name}: refused with a message naming {words!r}", status == expected_status and words in error,
                  f"{status}: {error}")
            check(f"{name}: the image is unchanged", snapshot(image) == before and
                  len(Gimp.get_images()) == images_before)
            image.delete()
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)


def remote_engine():
    """The dialog's engine row against a second, TLS engine (run-gimp.sh started it with a self-made certificate):
    a wrong fingerprint and a revoked token refused with their sentences, the right string stored 0600, a run
    that goes to the remote engine (not the local one), then back to the local engine."""
    import importlib.util

    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk, GimpUi, Gtk

    def pump(until, seconds=30):
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline:
            while Gtk.events_pending():
                Gtk.main_iteration()
            time.sleep(0.02)

    with open(os.path.join(TESTS, "remote-connection"), encoding="utf-8") as f:
        good = f.read().strip()
    with open(os.path.join(TESTS, "remote-wrong-pin"), encoding="utf-8") as f:
        wrong_pin = f.read().strip()
    with open(os.path.join(TESTS, "remote-revoked"), encoding="utf-8") as f:
        revoked = f.read().strip()
    stored = os.path.join(os.environ["UPREZ_CONFIG_DIR"], "remote-gimp")
    spec = importlib.util.spec_from_file_location("uprez_upscale_plugin", os.path.join(PLUGIN, "uprez-upscale.py"))
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    GimpUi.init("uprez-remote-check")
    procedure = Gimp.get_pdb().lookup_procedure("plug-in-uprez-upscale")
    dialog = plugin.make_dialog(procedure, procedure.create_config())
    dialog.show_all()
    row = dialog.uprez_engine_row
    before = row.uprez_label.get_text()
    connect = row.uprez_open_connect()
    messages = {}
    for name, text in (("fingerprint", wrong_pin), ("token", revoked)):
        connect.entry.set_text(text)
        connect.check()
        pump(lambda: not connect.checking)
        messages[name] = connect.status.get_text()
    check("K remote: a wrong fingerprint and a revoked token are refused with their sentences, nothing stored",
          before == "local" and "someone may be in between, or the engine made a new certificate; ask for a new "
          "connection string" in messages["fingerprint"] and "(it was revoked" in messages["token"]
          and not os.path.exists(stored), (before, messages))
    pump(lambda: False, 0.3)
    window = connect.window.get_window()
    shot = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
    shot.savev(os.path.join(TESTS, "remote.png"), "png", [], [])
    connect.entry.set_text(good)
    connect.check()
    pump(lambda: not connect.checking)
    port = good.split("@", 1)[1].split("/", 1)[0]
    check("K remote: the right string is stored with mode 0600 and the row says remote: HOST",
          os.path.exists(stored) and oct(os.stat(stored).st_mode & 0o777) == "0o600"
          and row.uprez_label.get_text() == "remote: " + port, (row.uprez_label.get_text(), connect.status.get_text()))
    try:
        local_jobs = len(Client().jobs())
        image, layer = new_image(40, 30)
        status, error, out = upscale(image, layer, scale=2.0, target="resize", preset="faithful")
        check("K remote: a run goes to the remote engine, not the local one",
              status == Gimp.PDBStatusType.SUCCESS and out is not None and (image.get_width(), image.get_height())
              == (80, 60) and len(Client().jobs()) == local_jobs, (status, error))
        image.delete()
    finally:
        row.uprez_use_local()
    check("K remote: Use the local engine forgets the choice", not os.path.exists(stored)
          and row.uprez_label.get_text() == "local", row.uprez_label.get_text())
    dialog.destroy()


TIMES = {}
ONLY = [name for name in os.environ.get("UPREZ_GIMP_ONLY", "").split(",") if name]  # for working on one check
for scenario in (resize_whole_layer_8bit, new_image_selection_8bit, resize_selection_16bit, new_image_float,
                 non_srgb_image, cancelled_by_killing_the_plug_in, refusals_with_no_engine, dialog_renders,
                 preview_during_a_run, open_in_window, remote_engine):
    if ONLY and scenario.__name__ not in ONLY:
        continue
    started = time.monotonic()
    try:
        scenario()
    except Exception:
        check(f"{scenario.__name__} ran to the end", False, traceback.format_exc())
    TIMES[scenario.__name__] = round(time.monotonic() - started, 1)
print("uprez-gimp-checks: seconds per scenario", TIMES, flush=True)

with open(os.path.join(TESTS, "results.json"), "w", encoding="utf-8") as f:
    json.dump(RESULTS, f, indent=1)

#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > Enhance > Upscale with Uprez.

Sends the active layer (or only the selected region, with the selection as a soft mask) to the local
Uprez engine and adds the upscaled pixels as a new layer: in the scaled image above the source, or in a
new image. The source layer's pixels are never written. Everything that needs no GIMP lives in the
`uprez_gimp` package beside this file; the engine client is `uprez_client` (a copy beside this file when
installed, plugin/uprez_client in a checkout).
"""

from __future__ import annotations

import os
import sys
import traceback

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

from uprez_gimp.clientpath import use_client  # noqa: E402  (the plug-in folder must be on sys.path first)

use_client(HERE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gtk", "3.0")
import uprez_gimp_ui  # noqa: E402
from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402
from uprez_gimp import formats, job, model_field, plan, settings  # noqa: E402

from uprez_client import UprezClientError  # noqa: E402

RW = GObject.ParamFlags.READWRITE
TITLE = "Upscale with Uprez"
DIALOG_FIELDS = ("scale", "preset", "model", "upsampler", "memory", "loras", "seed", "prompt", "target",
                 "selection-only")
LISTED_FIELDS = ("model", "upsampler")  # one list of the engine's models in the dialog (model_field.py)


def add_arguments(procedure: Gimp.Procedure) -> None:
    """The arguments a script passes and the dialog shows, in the dialog's order."""
    procedure.add_double_argument("scale", "Sc_ale", "size factor, e.g. 2 for twice the width and height",
                                  settings.MIN_SCALE, settings.MAX_SCALE, settings.DEFAULT_SCALE, RW)
    presets = Gimp.Choice.new()
    for index, (nick, label, hint) in enumerate(settings.preset_choices()):
        presets.add(nick, index, label, hint)
    procedure.add_choice_argument("preset", "_Preset", "how freely the model may add detail", presets,
                                  "balanced", RW)
    procedure.add_string_argument("model", "Upscale _model", settings.MODEL_HINT, "", RW)
    procedure.add_int_argument("seed", "S_eed", "same seed and settings give the same pixels",
                               0, settings.MAX_GIMP_SEED, 0, RW)
    procedure.add_string_argument("prompt", "Promp_t", "optional words describing the picture", "", RW)
    targets = Gimp.Choice.new()
    for index, nick in enumerate(plan.TARGETS):
        targets.add(nick, index, plan.TARGET_LABELS[nick], plan.TARGET_HINTS[nick])
    procedure.add_choice_argument("target", "Res_ult", "where the upscaled layer goes", targets, "resize", RW)
    procedure.add_boolean_argument("selection-only", "Select_ion only",
                                   "upscale only the selected area, with the selection as a soft mask; the "
                                   "new layer holds that area and is transparent elsewhere", False, RW)
    # Registered last so scripts that pass the earlier arguments by position keep working.
    procedure.add_string_argument("upsampler", "SR model, then re_fine with the model", settings.UPSAMPLER_HINT, "",
                                  RW)
    memory = Gimp.Choice.new()
    for index, (nick, label, hint) in enumerate(settings.memory_choices()):
        memory.add(nick, index, label, hint)
    procedure.add_choice_argument("memory", "GPU memor_y", "how the engine places the model in GPU memory",
                                  memory, settings.ENGINE_MEMORY, RW)
    # Last: scripts pass by position. No mnemonic: l, o, r, a and s are taken (Load, OK, Reset, Scale, Save).
    procedure.add_string_argument("loras", "LoRAs", settings.LORA_HINT, "", RW)
    procedure.add_layer_return_value("layer", "Layer", "the upscaled layer (in the new image for new-image)",
                                     False, RW)


def make_dialog(procedure: Gimp.Procedure, config: Gimp.ProcedureConfig,
                models: tuple | None = None) -> GimpUi.ProcedureDialog:
    """GIMP's own dialog for the arguments (it remembers the last values in `config`), with the model field as a
    list of the engine's models (`models`: model_field.fetch_choices(), asked here when None); GimpUi.init must
    have run."""
    choices, note = model_field.fetch_choices() if models is None else models
    dialog = GimpUi.ProcedureDialog.new(procedure, config, TITLE)
    dialog.fill([name for name in DIALOG_FIELDS if name not in LISTED_FIELDS])
    row, combo = uprez_gimp_ui.model_row(config, choices, note)
    # First in the dialog (what runs is the first choice to make): climb from the scale's widget to the box the
    # dialog's fields are in.
    first = dialog.get_widget("scale", GObject.TYPE_NONE)
    while first.get_parent() is not None and not isinstance(first.get_parent(), Gtk.Box):
        first = first.get_parent()
    box = first.get_parent()
    box.pack_start(row, False, False, 0)
    box.reorder_child(row, 0)
    row.show_all()

    def engine_changed() -> None:  # another engine, other models
        uprez_gimp_ui.fill_models(combo, *model_field.fetch_choices())

    engine = uprez_gimp_ui.engine_row(engine_changed)
    box.pack_start(engine, False, False, 0)
    box.reorder_child(engine, 0)  # above the model: which engine runs it comes first
    engine.show_all()
    dialog.uprez_model_combo = combo  # for the dialog check
    dialog.uprez_engine_row = engine
    return dialog


def colour_space(image: Gimp.Image, drawable: Gimp.Drawable, transfer: formats.Transfer) -> tuple[str, bytes | None]:
    """The babl format that reads the layer in its image's own colour space, and that space's ICC profile.

    The engine converts to sRGB for the model and back with LittleCMS (and keeps colours outside sRGB);
    babl would clip them converting to plain R'G'B'A. Without GIMP's Babl bindings: sRGB, as before.
    """
    try:
        gi.require_version("Babl", "0.1")
        from gi.repository import Babl

        name = Babl.get_name(Babl.format_with_space(transfer.babl, drawable.get_format()))
        icc = bytes(image.get_effective_color_profile().get_icc_profile())
    except (ImportError, ValueError, AttributeError, TypeError):
        return transfer.babl, None
    return name, icc or None


def read_pixels(drawable: Gimp.Drawable, rect: plan.Rect, transfer: formats.Transfer, babl: str | None = None
                ) -> bytes:
    x, y, width, height = rect
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, width, height), 1.0, babl or transfer.babl,
                                     Gegl.AbyssPolicy.NONE)
    return formats.swap_to_little_endian(bytes(data), transfer.depth)


def read_mask(image: Gimp.Image, geometry: plan.Placement) -> bytes:
    """The selection under the crop, one byte per pixel; outside the canvas it reads as unselected."""
    x, y, width, height = geometry.crop[:4]
    return bytes(image.get_selection().get_buffer().get(Gegl.Rectangle.new(x, y, width, height), 1.0,
                                                        formats.MASK_FORMAT, Gegl.AbyssPolicy.NONE))


def write_pixels(layer: Gimp.Layer, data: bytes, width: int, height: int, transfer: formats.Transfer,
                 babl: str | None = None) -> None:
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), babl or transfer.babl,
               formats.swap_to_little_endian(data, transfer.depth))
    buffer.flush()


def new_layer(image: Gimp.Image, name: str, width: int, height: int) -> Gimp.Layer:
    # RGBA whatever the source: a selection-only result needs its alpha, and one layer type keeps one path.
    return Gimp.Layer.new(image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)


def place_resized(image: Gimp.Image, source: Gimp.Layer, geometry: plan.Placement, data: bytes,
                  transfer: formats.Transfer, babl: str | None = None) -> Gimp.Layer:
    """Scale the image and add the result above the source: one undo step, nothing left behind on failure."""
    out_width, out_height = geometry.crop.out_width, geometry.crop.out_height
    layer = new_layer(image, geometry.layer_name, out_width, out_height)
    try:
        write_pixels(layer, data, out_width, out_height, transfer, babl)  # not in the image yet
    except Exception:
        layer.delete()
        raise
    image.undo_group_start()
    inserted = False
    try:
        image.scale(*geometry.canvas)
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        inserted = True
        layer.set_offsets(*geometry.layer_at)
    except Exception:
        if inserted:
            image.remove_layer(layer)
        elif layer.is_valid():
            layer.delete()
        raise
    finally:
        image.undo_group_end()
    return layer


def place_new_image(image: Gimp.Image, geometry: plan.Placement, data: bytes, transfer: formats.Transfer,
                    interactive: bool, babl: str | None = None) -> Gimp.Layer:
    """The result alone in a new image of the same precision and colour profile; shown when interactive."""
    width, height = geometry.canvas
    result = Gimp.Image.new_with_precision(width, height, Gimp.ImageBaseType.RGB, image.get_precision())
    try:
        profile = image.get_color_profile()
        if profile is not None:
            result.set_color_profile(profile)
        layer = new_layer(result, geometry.layer_name, geometry.crop.out_width, geometry.crop.out_height)
        result.insert_layer(layer, None, 0)
        layer.set_offsets(*geometry.layer_at)  # framed on the selection: its context lies outside the canvas
        write_pixels(layer, data, geometry.crop.out_width, geometry.crop.out_height, transfer, babl)
        if interactive:
            Gimp.Display.new(result)
    except Exception:
        result.delete()
        raise
    return layer


def show_progress(fraction: float | None, text: str | None) -> None:
    if text:
        Gimp.progress_set_text(text)
    if fraction is not None:
        Gimp.progress_update(fraction)


def upscale(image: Gimp.Image, drawables: list, config: Gimp.ProcedureConfig, interactive: bool) -> Gimp.Layer:
    """Read, send, wait, place. Raises PlanError or UprezClientError with the message to show."""
    if len(drawables) != 1:
        raise plan.PlanError("Pick one layer in the Layers dialog; Uprez upscales one layer at a time.")
    source = drawables[0]
    plan.check_drawable(isinstance(source, Gimp.Layer), source.is_rgb(), source.is_gray(), source.is_indexed())
    chosen = settings.settings_from(config.get_property("scale"), config.get_property("preset"),
                                    config.get_property("model"), config.get_property("seed"),
                                    config.get_property("prompt"), config.get_property("target"),
                                    config.get_property("selection-only"), config.get_property("upsampler"),
                                    config.get_property("memory"), config.get_property("loras"))
    bounds = Gimp.Selection.bounds(image)
    selection = (bounds[2], bounds[3], bounds[4], bounds[5]) if bounds[1] else None
    _, offset_x, offset_y = source.get_offsets()
    size = (image.get_width(), image.get_height())
    layer_rect = (offset_x, offset_y, source.get_width(), source.get_height())
    source_name, preset = source.get_name(), chosen.params.get("preset", "balanced")
    geometry = plan.make_plan(size, layer_rect, chosen.scale, chosen.target, selection, chosen.selection_only,
                              source_name, preset)
    transfer = formats.transfer_for(image.get_precision().value_nick)

    Gimp.progress_init("Upscaling with Uprez")
    previews = uprez_gimp_ui.PreviewWindow() if interactive else None  # scripts get no window
    try:
        client = job.connect(on_progress=show_progress)  # says how to start the engine before pixels are read
        babl, profile = colour_space(image, source, transfer)
        pixels = read_pixels(source, geometry.layer_read, transfer, babl)
        mask = read_mask(image, geometry) if geometry.region_only else None
        _, _, width, height = geometry.layer_read
        data, out_width, out_height = job.run_job(client, pixels, width, height, transfer, chosen.params, mask,
                                                  on_progress=show_progress, profile=profile,
                                                  on_preview=previews.safe_update if previews is not None else None)
        if (out_width, out_height) != (geometry.crop.out_width, geometry.crop.out_height):
            raise UprezClientError(f"the engine returned {out_width}x{out_height} pixels where "
                                   f"{geometry.crop.out_width}x{geometry.crop.out_height} were expected; update "
                                   "the plug-in and the engine to the same version")
        Gimp.progress_set_text("Adding the upscaled layer")
        target = chosen.target
        moved = not source.is_valid() or tuple(source.get_offsets()[1:]) != (offset_x, offset_y)
        if target == "resize" and (moved or (image.get_width(), image.get_height()) != size):
            # The user edited the image while the engine worked: scaling it again would be wrong.
            Gimp.message("Uprez: the image changed while the engine worked, so the result opens as a new image.")
            target = "new-image"
            geometry = plan.make_plan(size, layer_rect, chosen.scale, target, selection, chosen.selection_only,
                                      source_name, preset)
        if target == "resize":
            layer = place_resized(image, source, geometry, data, transfer, babl)
        else:
            layer = place_new_image(image, geometry, data, transfer, interactive, babl)
    finally:
        if previews is not None:
            previews.close()  # before the result shows: the preview window goes, the image gets its new layer
        Gimp.progress_end()  # also on failure: a bar left at its last value would look like a job still running
    if interactive:
        Gimp.displays_flush()
    return layer


def run(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image, drawables: list,
        config: Gimp.ProcedureConfig, data: object) -> Gimp.ValueArray:
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive:
        GimpUi.init(settings.PROCEDURE)
        dialog = make_dialog(procedure, config)
        accepted = dialog.run()
        dialog.destroy()
        if not accepted:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        layer = upscale(image, drawables, config, interactive)
    except plan.PlanError as exc:
        return procedure.new_return_values(Gimp.PDBStatusType.CALLING_ERROR, GLib.Error(str(exc)))
    except UprezClientError as exc:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(job.explain(exc)))
    except Exception as exc:  # a bug or a GIMP call that failed: say so instead of "plug-in crashed"
        traceback.print_exc()
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(f"Uprez: {type(exc).__name__}: {exc} (details on stderr)"))
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    values.remove(1)
    values.insert(1, GObject.Value(Gimp.Layer, layer))
    return values


def open_in_window(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image, drawables: list,
                   config: Gimp.ProcedureConfig, data: object) -> Gimp.ValueArray:
    """Filters > Enhance > Open in Uprez window: the layer as a PNG (8 or 16 bits, the image's profile) for the
    desktop window, started on it (uprez_client.handoff)."""
    from uprez_client import handoff

    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return procedure.new_return_values(Gimp.PDBStatusType.CALLING_ERROR,
                                           GLib.Error("Pick one layer in the Layers dialog."))
    layer = drawables[0]
    transfer = formats.transfer_for(image.get_precision().value_nick)
    depth = 8 if transfer.depth == 8 else 16  # the window opens 8- and 16-bit files: float goes as 16-bit
    babl, icc = colour_space(image, layer, formats.transfer_for(f"u{depth}-non-linear"))
    width, height = layer.get_width(), layer.get_height()
    data = bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, babl, Gegl.AbyssPolicy.NONE))
    try:
        path = handoff.handoff_path(layer.get_name())
        with open(path, "wb") as f:
            f.write(handoff.png_bytes(data if depth == 8 else handoff.swap16(data), width, height, depth, icc))
        handoff.open_in_window(path)
    except (OSError, ValueError, handoff.HandoffError) as exc:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(f"Uprez: {exc}"))
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


WINDOW_PROCEDURE = "plug-in-uprez-open-in-window"


class UprezUpscale(Gimp.PlugIn):
    def do_query_procedures(self) -> list:
        return [settings.PROCEDURE, WINDOW_PROCEDURE]

    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Gimp.Procedure:
        if name == WINDOW_PROCEDURE:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, open_in_window, None)
            procedure.set_image_types("RGB*")
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
            procedure.set_menu_label("Open in Uprez _window...")
            procedure.add_menu_path(settings.MENU_PATH)
            procedure.set_documentation("Send the layer to the Uprez desktop window",
                                        "Opens the layer in the Uprez window, to compare upscales before keeping "
                                        "one; the image is not changed.", name)
            procedure.set_attribution("Uprez", "Uprez", "2025")
            return procedure
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        # Every image type, so grayscale and indexed users get told how to convert instead of a greyed-out item.
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(settings.MENU_LABEL)
        procedure.add_menu_path(settings.MENU_PATH)
        procedure.set_documentation(
            "Upscale the layer or the selection with the local Uprez engine",
            "Sends the layer (or only the selected area, with the selection as a soft mask) to the Uprez engine "
            "(start it with `uprez serve`) and adds the upscaled pixels as a new layer, either in the image "
            "scaled by the same factor or in a new image. The source layer is never changed.",
            name)
        procedure.set_attribution("Uprez", "Uprez", "2025")
        add_arguments(procedure)
        return procedure


if __name__ == "__main__":
    Gimp.main(UprezUpscale.__gtype__, sys.argv)

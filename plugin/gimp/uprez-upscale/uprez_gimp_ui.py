"""The plug-in's parts that need GIMP and Gtk (the uprez_gimp package holds the ones that do not): the model list
widget of the dialog and the preview window of a run.

Model list: GIMP's generated procedure dialog shows a string argument as a plain entry and cannot hold a list
that is only known when the dialog opens, so this is a Gtk combo box of our own, bound to the procedure's
"model" and "upsampler" string arguments: what it shows comes from the config (GIMP remembers the last values
there), and what is chosen goes back to it. The labels tell the built-in flow model, the big flow models, SR
models on their own and "SR model, then refine with …" apart (uprez_client.options.model_choices, the list the
Krita dialog and the window show too).

Previews: the engine's previews during a run, in a window of their own: a temporary image GIMP shows in a
display, its layer replaced with each preview, deleted when the run ends. Not a layer in the person's image:
GIMP kills a plug-in whose progress is cancelled, and a killed plug-in cannot remove what it added, so the image
being upscaled is never touched before the result is placed (in one undo group). The preview image has its undo
switched off, so it records nothing either; if the plug-in is killed, it stays open as a separate, unsaved
"Uprez preview" image the person can close.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from uprez_gimp.model_field import ENGINE_DEFAULT_LABEL, LABEL, chosen, current_key


def model_row(config: Any, choices: list, note: str | None) -> tuple[Any, Any]:
    """(row, combo): a labelled combo box with an entry, bound to `config`'s model and upsampler."""
    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    combo = Gtk.ComboBoxText.new_with_entry()
    combo.append("", ENGINE_DEFAULT_LABEL)
    for label, key in choices:
        if key:
            combo.append(key, label)
    key = current_key(config.get_property("model"), config.get_property("upsampler"))
    if not combo.set_active_id(key):  # a model typed before, or one the engine no longer lists
        combo.get_child().set_text(config.get_property("model") or "")
    combo.set_tooltip_text(note or "the engine's models; or type a model id, folder or file")

    def changed(box: Any) -> None:
        model, upsampler = chosen(box.get_active_id(), box.get_child().get_text()
                                  if box.get_active_id() is None else "")
        config.set_property("model", model)
        config.set_property("upsampler", upsampler)

    combo.connect("changed", changed)
    label = Gtk.Label.new_with_mnemonic(LABEL)
    label.set_mnemonic_widget(combo)
    label.set_xalign(0.0)
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    row.pack_start(label, False, False, 0)
    row.pack_start(combo, True, True, 0)
    return row, combo


class PreviewWindow:
    """`update(png)` for each preview event; `close()` at the end (also after a failure)."""

    def __init__(self, show: bool = True) -> None:
        self.show = show  # False: keep the image without a display (scripts, tests)
        self.image: Any = None
        self.display: Any = None
        self.updates = 0

    def update(self, picture: bytes) -> None:
        """Show one preview (the engine sends JPEG; PNG works too)."""
        import gi

        gi.require_version("Gimp", "3.0")
        from gi.repository import Gimp, Gio

        suffix = ".jpg" if picture[:2] == b"\xff\xd8" else ".png"  # GIMP picks its loader by the name
        handle, path = tempfile.mkstemp(prefix="uprez-preview-", suffix=suffix)
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(picture)
            if self.image is None:
                self.image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
                self.image.undo_disable()
                self.image.get_layers()[0].set_name("Uprez preview")
                if self.show:
                    self.display = Gimp.Display.new(self.image)
            else:
                layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, self.image, Gio.File.new_for_path(path))
                old = self.image.get_layers()
                if (layer.get_width(), layer.get_height()) != (self.image.get_width(), self.image.get_height()):
                    self.image.resize(layer.get_width(), layer.get_height(), 0, 0)  # a later stage is larger
                self.image.insert_layer(layer, None, 0)
                for item in old:
                    self.image.remove_layer(item)
                layer.set_name("Uprez preview")  # after the old one is gone: GIMP would call it "… #1"
        finally:
            os.remove(path)
        self.updates += 1
        if self.display is not None:
            Gimp.displays_flush()

    def safe_update(self, picture: bytes) -> None:
        """`update`, but a preview that cannot be shown only stops the previews, never the upscale."""
        if self.updates < 0:
            return
        try:
            self.update(picture)
        except Exception:  # noqa: BLE001 - a GIMP call failed: the result matters, the preview does not
            self.close()
            self.updates = -1

    def close(self) -> None:
        if self.display is not None and self.display.is_valid():
            self.display.delete()  # also deletes the image when it was its only display
        if self.image is not None and self.image.is_valid():
            self.image.delete()
        self.display = self.image = None

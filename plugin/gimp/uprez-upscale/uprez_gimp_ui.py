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
    fill_models(combo, choices, note)
    key = current_key(config.get_property("model"), config.get_property("upsampler"))
    if not combo.set_active_id(key):  # a model typed before, or one the engine no longer lists
        combo.get_child().set_text(config.get_property("model") or "")

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


def fill_models(combo: Any, choices: list, note: str | None) -> None:
    """The combo's list: the engine default, then `choices` (label, key); the typed text stays."""
    combo.remove_all()
    combo.append("", ENGINE_DEFAULT_LABEL)
    for label, key in choices:
        if key:
            combo.append(key, label)
    combo.set_tooltip_text(note or "the engine's models; or type a model id, folder or file")


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


# -- the engine row: "Engine: local" / "Engine: remote: HOST", and "Connect to a remote engine…" ---------------
# The connection string is checked at once (a health and a token call over the pinned TLS connection, on a thread
# so the dialog keeps drawing) and stored by uprez_client.remote_choice in a 0600 file in the Uprez config folder,
# never in GIMP's plain settings (pluginrc, the procedure's remembered arguments).
REMOTE_APP = "gimp"
CONNECT_TITLE = "Connect to a remote engine"
CONNECT_INTRO = ("Paste the connection string the engine's owner gave you: one line starting with uprez://, printed by "
                 "`uprez tokens add NAME` on the machine that runs `uprez serve --remote`.")


def engine_row(on_changed: Any = None) -> Any:
    """A row with the engine's label and the Connect… / Use the local engine buttons; `row.uprez_*` for checks."""
    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    from uprez_client import remote_choice

    label = Gtk.Label()
    label.set_xalign(0.0)
    connect = Gtk.Button.new_with_label("Connect to a remote engine…")
    local = Gtk.Button.new_with_label("Use the local engine")
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    title = Gtk.Label.new("Engine")
    title.set_xalign(0.0)
    row.pack_start(title, False, False, 0)
    row.pack_start(label, True, True, 0)
    row.pack_start(connect, False, False, 0)
    row.pack_start(local, False, False, 0)

    def refresh() -> None:
        connection = remote_choice.load(REMOTE_APP)
        label.set_text(remote_choice.label(connection))
        label.set_tooltip_text(connection.url if connection is not None else
                               "the engine on this computer, started when needed")
        local.set_visible(connection is not None)
        local.set_no_show_all(connection is None)

    def switched() -> None:
        refresh()
        if on_changed is not None:
            on_changed()

    def open_connect(_button: Any = None) -> Any:
        dialog = ConnectDialog(row.get_toplevel(), switched)
        dialog.window.show_all()
        row.uprez_connect_dialog = dialog
        return dialog

    def use_local(_button: Any = None) -> None:
        remote_choice.forget(REMOTE_APP)
        switched()

    connect.connect("clicked", open_connect)
    local.connect("clicked", use_local)
    refresh()
    row.uprez_label, row.uprez_open_connect, row.uprez_use_local = label, open_connect, use_local
    return row


class ConnectDialog:
    """Paste, Connect: checked on a thread; stored and closed once the engine answered, else one sentence shown."""

    def __init__(self, parent: Any, on_connected: Any) -> None:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        self.on_connected = on_connected
        self.connection: Any = None
        self.window = Gtk.Dialog(title=CONNECT_TITLE, transient_for=parent if isinstance(parent, Gtk.Window) else None,
                                 modal=True)
        self.window.set_default_size(520, -1)
        box = self.window.get_content_area()
        box.set_spacing(8)
        box.set_border_width(10)
        intro = Gtk.Label.new(CONNECT_INTRO)
        intro.set_line_wrap(True)
        intro.set_max_width_chars(60)
        intro.set_xalign(0.0)
        self.entry = Gtk.Entry()
        self.entry.set_placeholder_text("uprez://TOKEN@HOST:PORT/?sha256=…")
        self.status = Gtk.Label()
        self.status.set_line_wrap(True)
        self.status.set_max_width_chars(60)
        self.status.set_xalign(0.0)
        for widget in (intro, self.entry, self.status):
            box.pack_start(widget, False, False, 0)
        self.cancel_button = self.window.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.connect_button = self.window.add_button("C_onnect", Gtk.ResponseType.NONE)
        self.connect_button.connect("clicked", lambda _b: self.check())
        self.cancel_button.connect("clicked", lambda _b: self.window.destroy())
        self.checking = False

    def check(self) -> None:
        import threading

        from gi.repository import GLib

        from uprez_client import remote_choice

        text = self.entry.get_text()
        self.checking = True
        self.connect_button.set_sensitive(False)
        self.status.set_text("Checking the engine…")

        def run() -> None:
            try:
                outcome: Any = remote_choice.check(text)
            except remote_choice.RemoteProblem as exc:
                outcome = exc
            except Exception as exc:  # noqa: BLE001 - a bug must still end the check
                outcome = remote_choice.RemoteProblem(f"The check failed: {type(exc).__name__}: {exc}.")
            GLib.idle_add(self._checked, outcome)

        threading.Thread(target=run, name="uprez-remote-check", daemon=True).start()

    def _checked(self, outcome: Any) -> bool:
        from uprez_client import remote_choice

        self.checking = False
        self.connect_button.set_sensitive(True)
        if isinstance(outcome, BaseException):
            self.status.set_markup(f"<span foreground='#b3261e'>{_escape(str(outcome))}</span>")
            return False
        connection, _health = outcome
        try:
            remote_choice.save(REMOTE_APP, connection)
        except OSError as exc:
            self.status.set_text(f"The engine answered, but the choice could not be saved ({exc.strerror or exc}).")
            return False
        self.connection = connection
        self.status.set_text(f"Connected to {remote_choice.label(connection)}.")
        self.window.destroy()
        self.on_connected()
        return False  # GLib.idle_add: run once


def _escape(text: str) -> str:
    from gi.repository import GLib

    return GLib.markup_escape_text(text)

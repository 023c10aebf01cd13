"""The engine's previews during a run, in a window of their own: a temporary image GIMP shows in a display, its
layer replaced with each preview, deleted when the run ends.

Not a layer in the person's image: GIMP kills a plug-in whose progress is cancelled, and a killed plug-in cannot
remove what it added, so the image being upscaled is never touched before the result is placed (in one undo
group). The preview image has its undo switched off, so it records nothing either; if the plug-in is killed,
it stays open as a separate, unsaved "Uprez preview" image the person can close.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any


class PreviewWindow:
    """`update(png)` for each preview event; `close()` at the end (also after a failure)."""

    def __init__(self, show: bool = True) -> None:
        self.show = show  # False: keep the image without a display (scripts, tests)
        self.image: Any = None
        self.display: Any = None
        self.updates = 0

    def update(self, png: bytes) -> None:
        import gi

        gi.require_version("Gimp", "3.0")
        from gi.repository import Gimp, Gio

        handle, path = tempfile.mkstemp(prefix="uprez-preview-", suffix=".png")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(png)
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

    def safe_update(self, png: bytes) -> None:
        """`update`, but a preview that cannot be shown only stops the previews, never the upscale."""
        if self.updates < 0:
            return
        try:
            self.update(png)
        except Exception:  # noqa: BLE001 - a GIMP call failed: the result matters, the preview does not
            self.close()
            self.updates = -1

    def close(self) -> None:
        if self.display is not None and self.display.is_valid():
            self.display.delete()  # also deletes the image when it was its only display
        if self.image is not None and self.image.is_valid():
            self.image.delete()
        self.display = self.image = None

"""Krita's side of the plug-in: the menu action, one dialog per window, and cancelling on close."""

from __future__ import annotations

from typing import Any

from krita import Extension, Krita

from . import document as doc_ops
from . import handoff, quick
from .job import RUNNING, cancel_all
from .qt import QTimer

ACTION_ID = "uprez_upscale"  # stable: people bind shortcuts to it (Settings > Configure Krita > Shortcuts)
MENU_LOCATION = "tools/scripts"
QUICK_ACTION_ID, QUICK_LABEL = quick.QUICK_ACTION_ID, quick.QUICK_LABEL
WINDOW_ACTION_ID = "uprez_open_in_window"


class UprezExtension(Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self._dialog = None

    def setup(self) -> None:
        notifier = Krita.instance().notifier()
        notifier.setActive(True)
        notifier.applicationClosing.connect(cancel_all)
        # Krita drops the document a moment after it says so, hence the check on the next turn.
        notifier.imageClosed.connect(lambda _name: QTimer.singleShot(200, cancel_orphans))
        notifier.viewClosed.connect(lambda *_: QTimer.singleShot(200, cancel_orphans))

    def createActions(self, window: Any) -> None:
        action = window.createAction(ACTION_ID, "Upscale with Uprez…", MENU_LOCATION)
        action.setToolTip("Upscale the active layer or the selection with AI; the result lands as a new layer")
        action.triggered.connect(self.show_dialog)

        quick_action = window.createAction(QUICK_ACTION_ID, QUICK_LABEL, MENU_LOCATION)
        quick_action.setToolTip("Upscale the selection (or the layer) with the settings last used in the Uprez "
                                "dialog, without opening it; give it a shortcut in Configure Krita > Keyboard "
                                "Shortcuts")
        quick_action.triggered.connect(lambda *_: quick.run(Krita.instance().activeDocument()))
        window_action = window.createAction(WINDOW_ACTION_ID, "Open in Uprez window…", MENU_LOCATION)
        window_action.setToolTip("Send the active layer to the Uprez desktop window, to compare before keeping a "
                                 "result")
        window_action.triggered.connect(lambda *_: handoff.open_active_layer(Krita.instance().activeDocument()))

    def show_dialog(self) -> None:
        from .dialog import UpscaleDialog

        app = Krita.instance()
        document = app.activeDocument()
        window = app.activeWindow()
        parent = window.qwindow() if window is not None else None
        if self._dialog is None:
            self._dialog = UpscaleDialog(document, parent, active_document=app.activeDocument)
        elif self._dialog.job is None:
            self._dialog.set_document(document)
        self._dialog.show()
        self._dialog.raise_()
        self._dialog.activateWindow()


def cancel_orphans() -> None:
    """Cancel the jobs whose document is no longer open."""
    for job in list(RUNNING):
        if not doc_ops.is_open(job.source.document):
            job.document_closed()

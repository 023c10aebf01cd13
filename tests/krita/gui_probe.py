"""Test probe, installed as a Krita Python plug-in by test_krita_gui.py: drives the Uprez plug-in in the live Krita
window (its actions, dialog, quick action, hand-off and undo), writes what happened to UPREZ_PROBE_OUT, quits."""
import json
import os
import time
import traceback

from krita import Extension, Krita, Selection

OUT = {}


def pump(seconds, until=lambda: False):
    from uprez_krita.qt import QApplication
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        QApplication.processEvents()
        time.sleep(0.02)


def new_document(app, name, width=64, height=48):
    doc = app.createDocument(width, height, name, "RGBA", "U8", "", 72.0)
    layer = doc.createNode("src", "paintlayer")
    layer.setPixelData(bytes([0, 128, 255, 255]) * (width * height), 0, 0, width, height)
    doc.rootNode().addChildNode(layer, None)
    doc.setActiveNode(layer)
    app.activeWindow().addView(doc)
    pump(1.0)
    return doc, layer


def activate(app, doc):
    """Bring doc's view to the front, as clicking its tab does (activeDocument() is the front view's)."""
    window = app.activeWindow()
    for view in window.views():
        if view.document() == doc:
            window.showView(view)
            view.setVisible()
    app.setActiveDocument(doc)
    pump(0.5)


def show_dialog_on(app, extension, doc):
    activate(app, doc)
    app.action("uprez_upscale").trigger()  # what Tools > Scripts > Upscale with Uprez... does
    pump(0.5)
    return extension._dialog


def state(doc):
    # (the GUI shows the global selection as a "Selection Mask" node: not a layer)
    return {"size": [doc.width(), doc.height()],
            "layers": [n.name() for n in doc.rootNode().childNodes() if n.type() != "selectionmask"]}


def run():
    out = OUT
    try:
        app = Krita.instance()
        from uprez_krita import qt
        out["platform"] = qt.QApplication.platformName()  # the real windowing system, not Qt's offscreen one
        out["krita"], out["qt"] = app.version(), qt.API
        out["undo_api"] = sorted(name for cls in ("Document", "Node", "Krita") for name in
                                 dir(getattr(__import__("krita"), cls))
                                 if any(w in name.lower() for w in ("undo", "macro", "transaction", "command")))
        doc, layer = new_document(app, "probe")
        out["front_is_probe"] = app.activeDocument() == doc
        extension = next(e for e in app.extensions() if type(e).__name__ == "UprezExtension")
        dialog = show_dialog_on(app, extension, doc)
        out["dialog_visible"] = bool(dialog is not None and dialog.isVisible())
        out["dialog_on_probe"] = bool(dialog is not None and dialog.document == doc)
        out["selection_only_enabled"] = bool(dialog is not None and dialog.selection_only.isEnabled())
        out["actions"] = {name: (app.action(name).text() if app.action(name) is not None else None)
                          for name in ("uprez_upscale", "uprez_upscale_selection", "uprez_open_in_window")}

        # The dialog remembers its choices per document.
        dialog.scale.setCurrentText("3×")
        dialog.seed.setValue(77)
        dialog.loras.setText("detail.safetensors:0.5")
        dialog.hide()
        other, _ = new_document(app, "other")
        dialog = show_dialog_on(app, extension, other)
        out["other_starts_from_last"] = [dialog.scale.currentText(), dialog.seed.value(), dialog.loras.text()]
        dialog.scale.setCurrentText("4×")
        dialog.seed.setValue(5)
        dialog.loras.setText("")
        dialog.hide()
        dialog = show_dialog_on(app, extension, doc)
        out["probe_again"] = [dialog.document == doc, dialog.scale.currentText(), dialog.seed.value(),
                              dialog.loras.text()]
        dialog = show_dialog_on(app, extension, other)
        out["other_again"] = [dialog.document == other, dialog.scale.currentText(), dialog.seed.value(),
                              dialog.loras.text()]

        # The quick action: the last settings (set here in the dialog), on the selection, no dialog.
        quick, _ = new_document(app, "quick")
        selection = Selection()
        selection.select(16, 12, 24, 16, 255)
        quick.setSelection(selection)
        dialog = show_dialog_on(app, extension, quick)
        dialog.scale.setCurrentText("2×")
        dialog.seed.setValue(3)
        dialog.loras.setText("")  # the engine's built-in model takes no LoRAs
        dialog.target.setCurrentIndex(dialog.target.findData("resize"))
        dialog.hide()
        activate(app, quick)
        before = state(quick)
        out["quick_before"] = before
        app.action("uprez_upscale_selection").trigger()
        pump(120, lambda: len(state(quick)["layers"]) > len(before["layers"]))
        pump(0.5)
        out["quick_after"] = state(quick)
        out["quick_dialog_hidden"] = not extension._dialog.isVisible()
        added = next(n for n in quick.rootNode().childNodes() if "selection ×" in n.name())
        bounds = added.bounds()
        out["quick_layer_bounds"] = [bounds.x(), bounds.y(), bounds.width(), bounds.height()]
        # Undo, as the person would (Edit > Undo): how many steps does the result take?
        undo = app.action("edit_undo")
        out["undo_steps"] = []
        for _ in range(2):
            undo.trigger()
            pump(3.0)
            quick.waitForDone()
            out["undo_steps"].append(state(quick))

        # Open in Uprez window: the layer goes to the window command from bridge.json (here: a copy).
        config = os.environ["UPREZ_CONFIG_DIR"]
        target = os.path.join(os.path.dirname(os.environ["UPREZ_PROBE_OUT"]), "opened.png")
        with open(os.path.join(config, "bridge.json"), "w") as f:
            json.dump({"gui_command": ["/bin/sh", "-c", 'cp "$1" "$0"', target]}, f)
        activate(app, doc)
        doc.setActiveNode(layer)
        pump(0.3)
        app.action("uprez_open_in_window").trigger()
        pump(30, lambda: os.path.exists(target))
        os.remove(os.path.join(config, "bridge.json"))
        out["opened"] = os.path.exists(target)

        # Closing a document while its job runs cancels the job in the engine.
        import uprez_krita
        from uprez_krita.client_import import uprez_client
        seen = []
        job = uprez_krita.upscale(doc, scale=4.0, node=layer, wait=False, start_engine=False,
                                  model=os.environ["UPREZ_SLOW_MODEL"], steps=200, strength=1.0)
        job.event.connect(lambda e: seen.append(e.kind))  # uprez_client.JobEvent
        pump(60, lambda: "progress" in seen)
        out["running_before_close"] = job.state == "running" and "progress" in seen
        doc.setModified(False)
        doc.close()  # the person closes the document while the engine works
        pump(30, lambda: job.state != "running")
        out["job_state"] = job.state
        out["engine_state"] = uprez_client.Client().job(job.job_id)["state"]
    except Exception:
        out["error"] = traceback.format_exc()
    with open(os.environ["UPREZ_PROBE_OUT"], "w") as f:
        json.dump(out, f)
    os._exit(0)  # Krita's shutdown would wait on autosave prompts; the report is all we need


class Probe(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        from uprez_krita.qt import QTimer
        QTimer.singleShot(500, run)  # after every plug-in's createActions, once the window is up


Krita.instance().addExtension(Probe(Krita.instance()))

"""Run inside the real Krita by kritarunner (tests/krita/test_krita_bridge.py starts it): drive the bridge.

Each scenario builds a document with a known layer (and selection), calls the scripting entry point
against the real engine, and records what Krita holds afterwards: sizes, positions, layer order and
raw pixel bytes, written to UPREZ_KRITA_OUT as JSON plus .bin files. The pytest side asserts on them,
so the checks run with numpy rather than inside Krita's Python.
"""

import json
import os
import struct
import time
import traceback

import uprez_krita
from krita import Krita, Selection
from uprez_krita import document as doc_ops
from uprez_krita import qt
from uprez_krita.client_import import uprez_client
from uprez_krita.qt import process_events

OUT = os.environ.get("UPREZ_KRITA_OUT", "/tmp/uprez-krita")
SLOW_MODEL = os.environ.get("UPREZ_KRITA_SLOW_MODEL", "")
W, H = 64, 48


def pattern(width, height, depth):
    """A smooth colour pattern, fully opaque, as BGRA bytes of the given depth."""
    out = bytearray()
    top = 255 if depth == 8 else 65535
    for y in range(height):
        for x in range(width):
            r = top * x // (width - 1)
            g = top * y // (height - 1)
            b = top * ((x + y) % 16) // 15
            out += bytes((b, g, r, 255)) if depth == 8 else struct.pack("<4H", b, g, r, top)
    return bytes(out)


def make_document(depth="U8", name="src"):
    app = Krita.instance()
    doc = app.createDocument(W, H, "uprez-test", "RGBA", depth, "", 72.0)
    layer = doc.createNode(name, "paintlayer")
    layer.setPixelData(pattern(W, H, 8 if depth == "U8" else 16), 0, 0, W, H)
    doc.rootNode().addChildNode(layer, None)
    doc.refreshProjection()
    doc.waitForDone()
    return doc, layer


def select(doc, x, y, w, h, feather=0):
    selection = Selection()
    selection.select(x, y, w, h, 255)
    if feather:
        selection.feather(feather)
    doc.setSelection(selection)
    doc.waitForDone()


def state(doc):
    return {
        "size": [doc.width(), doc.height()],
        "layers": [[n.name(), n.type(), n.colorDepth()] for n in doc.rootNode().childNodes()],
    }


def save_bytes(name, data):
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(bytes(data))
    return name + ".bin"


def layer_record(prefix, layer, doc):
    bounds = layer.bounds()
    return {
        "name": layer.name(),
        "depth": layer.colorDepth(),
        "bounds": [bounds.x(), bounds.y(), bounds.width(), bounds.height()],
        "pixels": save_bytes(prefix + "-layer", layer.pixelData(0, 0, doc.width(), doc.height())),
    }


def run_whole(record, target, depth):
    doc, src = make_document(depth)
    before = bytes(src.pixelData(0, 0, W, H))
    reference = doc.clone()  # scaled the same way afterwards: what the source layer must then hold
    # The profile the bridge sends with the pixels (Krita's default for the depth): the test asks the engine
    # the same job with it.
    record["sent_profile"] = save_bytes(record["name"] + "-icc", doc_ops.read_source(doc, 2.0, node=src).profile
                                        or b"")
    start = time.monotonic()
    out = uprez_krita.upscale(doc, scale=2.0, target=target, node=src, start_engine=False)
    record["seconds"] = round(time.monotonic() - start, 2)
    record["source_before"] = save_bytes(record["name"] + "-before", before)
    record["doc"] = state(doc)
    if target == "resize":
        resolution = int(round(reference.resolution()))
        reference.scaleImage(2 * W, 2 * H, resolution, resolution, doc_ops._filter())
        reference.waitForDone()
        ref_src = reference.nodeByName("src")
        record["source_after"] = save_bytes(record["name"] + "-after", src.pixelData(0, 0, 2 * W, 2 * H))
        record["source_expected"] = save_bytes(record["name"] + "-expected", ref_src.pixelData(0, 0, 2 * W, 2 * H))
        record["result"] = layer_record(record["name"], out, doc)
        record["above_source"] = [n.name() for n in doc.rootNode().childNodes()].index(out.name()) == \
            [n.name() for n in doc.rootNode().childNodes()].index("src") + 1
    else:
        record["source_after"] = save_bytes(record["name"] + "-after", src.pixelData(0, 0, W, H))
        record["new_doc"] = state(out)
        record["result"] = layer_record(record["name"], out.rootNode().childNodes()[-1], out)


def run_selection(record, target):
    doc, src = make_document()
    select(doc, 20, 12, 24, 16, feather=2)
    box = doc_ops.selection_box(doc)
    record["selection_box"] = list(box)
    record["mask"] = save_bytes(record["name"] + "-mask", doc.selection().pixelData(0, 0, W, H))
    record["doc_before"] = state(doc)
    before = bytes(src.pixelData(0, 0, W, H))
    out = uprez_krita.upscale(doc, scale=2.0, target=target, selection_only=True, node=src, start_engine=False)
    record["source_before"] = save_bytes(record["name"] + "-before", before)
    record["doc"] = state(doc)
    if target == "resize":
        record["result"] = layer_record(record["name"], out, doc)
    else:
        record["source_after"] = save_bytes(record["name"] + "-after", src.pixelData(0, 0, W, H))
        record["new_doc"] = state(out)
        record["result"] = layer_record(record["name"], out.rootNode().childNodes()[-1], out)
    # The same request at strength 0 is the engine's plain resize: what the model's pixels must differ from.
    plain_doc, plain_src = make_document()
    select(plain_doc, 20, 12, 24, 16, feather=2)
    plain = uprez_krita.upscale(plain_doc, scale=2.0, target=target, selection_only=True, node=plain_src,
                                start_engine=False, strength=0.0)
    holder = plain_doc if target == "resize" else plain
    layer = plain if target == "resize" else plain.rootNode().childNodes()[-1]
    record["plain"] = layer_record(record["name"] + "-plain", layer, holder)


def run_cancel(record):
    doc, src = make_document()
    before_state, before = state(doc), bytes(src.pixelData(0, 0, W, H))
    job = uprez_krita.upscale(doc, scale=4.0, node=src, wait=False, start_engine=False, model=SLOW_MODEL,
                              steps=200, strength=1.0)
    seen = []
    job.event.connect(lambda e: seen.append(e.kind))  # uprez_client.JobEvent
    deadline = time.monotonic() + 60
    while "progress" not in seen and job.state == "running" and time.monotonic() < deadline:
        process_events()
        time.sleep(0.02)
    started = time.monotonic()
    job.cancel()
    try:
        job.wait(timeout=60)
        record["outcome"] = "done"
    except uprez_krita.UpscaleCancelled as exc:
        record["outcome"] = "cancelled"
        record["message"] = str(exc)
    record["cancel_seconds"] = round(time.monotonic() - started, 2)
    record["events_seen"] = sorted(set(seen))
    engine_job = uprez_client.Client().job(job.job_id)
    record["engine_state"], record["engine_client"] = engine_job["state"], engine_job["params"]["client"]
    record["unchanged"] = state(doc) == before_state and bytes(src.pixelData(0, 0, W, H)) == before


def run_failure(record):
    doc, src = make_document()
    before_state, before = state(doc), bytes(src.pixelData(0, 0, W, H))
    try:
        uprez_krita.upscale(doc, scale=2.0, node=src, start_engine=False, model="no-such-model")
        record["outcome"] = "done"
    except uprez_krita.UpscaleFailed as exc:
        record["outcome"] = "failed"
        record["message"] = str(exc)
    record["unchanged"] = state(doc) == before_state and bytes(src.pixelData(0, 0, W, H)) == before


def run_refusals(record):
    """Inputs the bridge must refuse before sending anything, each with its message."""
    messages = {}
    doc, src = make_document("F16")  # half floats (32-bit float documents are taken)
    messages["float"] = _refusal(lambda: uprez_krita.upscale(doc, node=src, start_engine=False))
    doc = Krita.instance().createDocument(W, H, "grey", "GRAYA", "U8", "", 72.0)
    messages["grey"] = _refusal(lambda: uprez_krita.upscale(doc, source="visible", start_engine=False))
    doc, src = make_document()
    messages["no_selection"] = _refusal(lambda: uprez_krita.upscale(doc, node=src, selection_only=True,
                                                                    start_engine=False))
    nowhere = uprez_client.Client("http://127.0.0.1:9", token="x")
    messages["no_engine"] = _refusal(lambda: uprez_krita.upscale(doc, node=src, client=nowhere, start_engine=False))
    messages["bad_scale"] = _refusal(lambda: uprez_krita.upscale(doc, scale=0.5, node=src, start_engine=False))
    record["messages"] = messages
    record["unchanged"] = state(doc)["size"] == [W, H] and len(doc.rootNode().childNodes()) == 2


def _refusal(call):
    try:
        call()
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)
    return None


def run_close(record):
    """Closing the document while its job runs cancels the job in the engine."""
    from uprez_krita import extension

    doc, src = make_document()
    job = uprez_krita.upscale(doc, scale=4.0, node=src, wait=False, start_engine=False, model=SLOW_MODEL,
                              steps=200, strength=1.0)
    deadline = time.monotonic() + 60
    while job.job_id is None and time.monotonic() < deadline:
        process_events()
        time.sleep(0.02)
    doc.close()
    extension.cancel_orphans()  # what the imageClosed handler runs
    try:
        job.wait(timeout=60)
        record["outcome"] = "done"
    except uprez_krita.UpscaleCancelled:
        record["outcome"] = "cancelled"
    record["engine_state"] = uprez_client.Client().job(job.job_id)["state"]


def float_pattern(width, height):
    """The same pattern as `pattern`, squeezed to 0.4-0.6 so its colours lie inside sRGB in ClayRGB too, as
    RGBA 32-bit floats (Krita's F32 sample order)."""
    out = bytearray()
    for y in range(height):
        for x in range(width):
            out += struct.pack("<4f", 0.4 + 0.2 * x / (width - 1), 0.4 + 0.2 * y / (height - 1),
                               0.4 + 0.2 * ((x + y) % 16) / 15, 1.0)
    return bytes(out)


def run_profiled(record, depth, profile):
    """A document in a non-sRGB profile (linear sRGB, or Adobe-RGB-compatible ClayRGB) upscaled into a new
    document: the bridge sends the document's ICC profile with the pixels, the result comes back in it."""
    app = Krita.instance()
    doc = app.createDocument(W, H, "uprez-profiled", "RGBA", depth, profile, 72.0)
    layer = doc.createNode("src", "paintlayer")
    layer.setPixelData(float_pattern(W, H) if depth == "F32" else pattern(W, H, 16), 0, 0, W, H)
    doc.rootNode().addChildNode(layer, None)
    doc.refreshProjection()
    doc.waitForDone()
    out = uprez_krita.upscale(doc, scale=2.0, target="new_document", node=layer, start_engine=False, seed=7)
    record["profile"] = doc.colorProfile()
    record["sent_profile"] = save_bytes(record["name"] + "-icc", doc_ops.read_source(doc, 2.0, node=layer).profile
                                        or b"")
    record["source"] = save_bytes(record["name"] + "-source", layer.pixelData(0, 0, W, H))
    record["new_doc_profile"] = out.colorProfile()
    record["new_doc"] = state(out)
    record["result"] = layer_record(record["name"], out.rootNode().childNodes()[-1], out)


def _wait(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        process_events()
        time.sleep(0.02)


def run_remote(record):
    """The dialog's engine row: Connect to a remote engine… (a TLS engine; a wrong fingerprint, a revoked token,
    then the right string), a job that runs there while a bridge.json would start a local engine, then back to
    local. In a config folder of its own, so the other scenarios keep the local engine."""
    from uprez_krita.remote import EngineRow

    good = os.environ["UPREZ_KRITA_REMOTE"]
    folder = os.path.join(OUT, "remote-config")
    os.makedirs(folder, exist_ok=True)
    marker = os.path.join(OUT, "local-engine-started")
    with open(os.path.join(folder, "bridge.json"), "w") as f:  # a local engine start that leaves a mark
        json.dump({"start_command": ["python3", "-c", f"open({marker!r}, 'w').close()"]}, f)
    previous = os.environ.get("UPREZ_CONFIG_DIR")
    os.environ["UPREZ_CONFIG_DIR"] = folder
    try:
        row = EngineRow()
        record["label_before"] = row.label.text()
        dialog = row.open_connect()
        refusals = {}
        for name, text in (("fingerprint", os.environ["UPREZ_KRITA_REMOTE_WRONG_PIN"]),
                           ("token", os.environ["UPREZ_KRITA_REMOTE_REVOKED"]),
                           ("malformed", "https://" + good.split("@", 1)[1])):
            dialog.field.setText(text)
            dialog.check()
            _wait(lambda: dialog.connect_button.isEnabled())
            refusals[name] = dialog.status.text()
            if name == "fingerprint":
                dialog.field.setCursorPosition(0)
                dialog.resize(620, dialog.heightForWidth(620) if dialog.hasHeightForWidth() else 240)
                _wait(lambda: False, 0.2)
                dialog.grab().save(os.path.join(OUT, "remote-refused.png"))  # docs/krita-remote-refused.png
        record["refusals"] = refusals
        record["stored_after_refusals"] = os.path.exists(os.path.join(folder, "remote-krita"))
        dialog.field.setText(good)
        dialog.check()
        _wait(lambda: not dialog.isVisible())
        record["label_connected"] = row.label.text()
        record["mode"] = oct(os.stat(os.path.join(folder, "remote-krita")).st_mode & 0o777)
        record["kritarc_has_token"] = good.split("@", 1)[0] in (Krita.instance().readSetting("uprez",
                                                                                             "last_choices", "") or "")
        doc, src = make_document()
        from uprez_krita.dialog import UpscaleDialog

        shown = UpscaleDialog(doc)  # the engine row in the dialog, connected (docs/krita-remote-dialog.png)
        shown.show()
        _wait(lambda: shown.model.count() > 1, 30)  # the remote engine's model list
        shown.resize(620, shown.sizeHint().height())
        _wait(lambda: False, 0.2)
        record["dialog_engine"] = shown.engine.label.text()
        shown.grab().save(os.path.join(OUT, "remote-dialog.png"))
        shown.hide()
        out = uprez_krita.upscale(doc, scale=2.0, target="new_document", node=src)  # start_engine: as the dialog
        record["new_doc"] = state(out)
        record["local_started"] = os.path.exists(marker)
        row.use_local()
        record["label_after"] = row.label.text()
        record["stored_after_local"] = os.path.exists(os.path.join(folder, "remote-krita"))
    finally:
        if previous is None:
            os.environ.pop("UPREZ_CONFIG_DIR", None)
        else:
            os.environ["UPREZ_CONFIG_DIR"] = previous


SCENARIOS = {
    "profiled_linear_u16": lambda r: run_profiled(r, "U16", "sRGB-elle-V2-g10.icc"),
    "profiled_clay_f32": lambda r: run_profiled(r, "F32", "ClayRGB-elle-V2-g22.icc"),
    "resize_u8": lambda r: run_whole(r, "resize", "U8"),
    "new_document_u8": lambda r: run_whole(r, "new_document", "U8"),
    "resize_u16": lambda r: run_whole(r, "resize", "U16"),
    "new_document_u16": lambda r: run_whole(r, "new_document", "U16"),
    "selection_resize": lambda r: run_selection(r, "resize"),
    "selection_new_document": lambda r: run_selection(r, "new_document"),
    "cancel": run_cancel,
    "failure": run_failure,
    "refusals": run_refusals,
    "close_document": run_close,
    "remote": run_remote,
}


def main(*_args):
    Krita.instance().setBatchmode(True)
    os.makedirs(OUT, exist_ok=True)
    wanted = [s for s in os.environ.get("UPREZ_KRITA_SCENARIOS", "").split(",") if s] or list(SCENARIOS)
    results = {}
    for name in wanted:
        record = {"name": name, "krita": Krita.instance().version(), "qt": qt.API}
        started = time.monotonic()
        try:
            SCENARIOS[name](record)
            record["ok"] = True
        except Exception:
            record["ok"] = False
            record["error"] = traceback.format_exc()
        record["scenario_seconds"] = round(time.monotonic() - started, 1)
        results[name] = record
        with open(os.path.join(OUT, "results.json"), "w") as f:
            json.dump(results, f, indent=1)


def screenshot(*_args):
    """The dialog after a real job on the sample photo's selection, saved to UPREZ_KRITA_SCREENSHOT."""
    from uprez_krita.dialog import UpscaleDialog

    app = Krita.instance()
    app.setBatchmode(True)
    doc = app.openDocument(os.environ["UPREZ_KRITA_SAMPLE"])
    doc.waitForDone()
    select(doc, 150, 120, 300, 260, feather=8)
    dialog = UpscaleDialog(doc)
    dialog.source.setCurrentIndex(1)  # the visible image: a freshly opened file has no active layer here
    dialog.show()
    dialog.run()
    deadline = time.monotonic() + 120
    while (dialog.job is not None or not dialog.preview.isVisible()) and time.monotonic() < deadline:
        process_events()
        time.sleep(0.02)
    for _ in range(20):
        process_events()
        time.sleep(0.02)
    dialog.grab().save(os.environ.get("UPREZ_KRITA_SCREENSHOT", "/tmp/uprez-krita-dialog.png"))

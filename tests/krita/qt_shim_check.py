"""Run in a subprocess per Qt binding by test_bridge_units.py: the shim, a cross-thread signal, the dialog."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from uprez_krita import qt  # noqa: E402
from uprez_krita.dialog import UpscaleDialog  # noqa: E402
from uprez_krita.form import to_request  # noqa: E402


class Relay(qt.QObject):
    fired = qt.Signal(object)


def main() -> None:
    app = qt.QApplication.instance() or qt.QApplication(sys.argv)
    report: dict = {"api": qt.API, "binding_loaded": sorted(m for m in ("PyQt5", "PyQt6") if m in sys.modules)}

    # A signal emitted on a worker thread is delivered on the GUI thread by process_events (how jobs report).
    relay, received = Relay(), []
    relay.fired.connect(lambda value: received.append((value, threading.current_thread() is threading.main_thread())))
    threading.Thread(target=lambda: relay.fired.emit("from worker")).start()
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        qt.process_events()
        time.sleep(0.01)
    report["signal"] = received

    dialog = UpscaleDialog(None)
    report["run_enabled_without_document"] = dialog.run_button.isEnabled()
    report["selection_enabled_without_document"] = dialog.selection_only.isEnabled()
    dialog.scale.setCurrentText("Custom…")
    dialog.custom_scale.setText("250%")
    dialog.preset.setCurrentIndex(2)
    dialog.seed.setValue(1234)
    dialog.prompt.setText("  a lighthouse at dusk ")
    dialog.target.setCurrentIndex(1)
    dialog.source.setCurrentIndex(1)
    report["request"] = to_request(dialog.choices())._asdict()
    report["memory_labels"] = [dialog.memory.itemText(i) for i in range(dialog.memory.count())]
    dialog.memory.setCurrentIndex(dialog.memory.findText("Group offload"))
    report["memory_params"] = to_request(dialog.choices()).params
    # The LoRA field: sent as typed and read by options.parse_loras, shown again from remembered choices.
    report["loras_tooltip"] = dialog.loras.toolTip()
    dialog.loras.setText(" detail.safetensors:0.8,\n/loras/up.safetensors ")
    report["loras_params"] = to_request(dialog.choices()).params
    kept = dialog.choices()
    dialog.loras.setText("")
    report["loras_empty_params"] = to_request(dialog.choices()).params
    dialog.apply_choices(kept)
    report["loras_reshown"] = dialog.loras.text()
    dialog.show()
    qt.process_events()
    report["custom_visible"] = dialog.custom_scale.isVisible()
    report["size"] = [dialog.width(), dialog.height()]
    from uprez_client import JobEvent

    dialog._on_event(JobEvent("engine_idle", message="engine idle, model unloaded"))  # what job.py emits
    report["idle_status"] = dialog.status.text()
    print(json.dumps(report))
    app.quit()


if __name__ == "__main__":
    main()

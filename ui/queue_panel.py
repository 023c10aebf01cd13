"""The engine's queue: every job it knows (this window's, Krita's, GIMP's), polled once a second, each cancellable."""

from __future__ import annotations

from typing import Any

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from plugin.uprez_client import Client
from ui.background import run_in_background
from ui.engine_link import ACTIVE_STATES

POLL_MS = 1000


def describe_job(job: dict[str, Any], own_ids: set[str]) -> str:
    """'this window · 640×480 → 2× · builtin' from a job record; other apps by the name they sent (`client`)."""
    params = job.get("params") or {}
    width, height = params.get("width"), params.get("height")
    size = f"{width}×{height} " if width and height else ""
    scale = params.get("scale")
    model = params.get("model") or "default model"
    model = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    origin = "this window" if job.get("id") in own_ids else (params.get("client") or "another app")
    scale_text = f"→ {scale:g}×" if isinstance(scale, (int, float)) else ""
    return f"{origin} · {size}{scale_text} · {model}"


def state_text(job: dict[str, Any]) -> str:
    state = job.get("state", "?")
    if state == "queued" and job.get("position"):
        return f"queued (#{job['position']})"
    if job.get("cancelling") and state == "running":
        return "cancelling…"
    return str(state)


class QueuePanel(QWidget):
    """A table of the engine's jobs; polls `client.jobs()` off the GUI thread while a client is set."""

    cancel_requested = pyqtSignal(str)
    polled = pyqtSignal(list)  # the jobs of each successful poll (tests wait on it)
    engine_state = pyqtSignal(dict)  # each poll's whole answer: model_loaded, idle_unloaded, exit_after…
    lost = pyqtSignal(object)  # a poll failed: the exception (the engine may have exited after idling)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client: Client | None = None
        self.own_ids: set[str] = set()
        self._in_flight = False
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Job", "State", "Progress", ""])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.empty = QLabel("No jobs in the engine's queue.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addWidget(self.empty)
        self.table.hide()
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    def set_client(self, client: Client | None) -> None:
        self.client = client
        if client is None:
            self.timer.stop()
        else:
            self.timer.start()
            self.poll()

    def poll(self) -> None:
        if self.client is None or self._in_flight:
            return  # a slow engine gets one request at a time, not a pile-up
        self._in_flight = True
        client = self.client
        run_in_background(client.queue, self._show, self._poll_failed)

    def _poll_failed(self, exc: BaseException) -> None:
        self._in_flight = False  # the window's engine status says what is wrong; keep the last list
        if self.client is not None:
            self.lost.emit(exc)

    def _show(self, answer: dict[str, Any]) -> None:
        self._in_flight = False
        jobs = answer.get("jobs") or []
        self.engine_state.emit(answer)
        self.table.setRowCount(len(jobs))
        for row, job in enumerate(reversed(jobs)):  # newest first
            self._fill_row(row, job)
        self.table.setVisible(bool(jobs))
        self.empty.setVisible(not jobs)
        self.polled.emit(jobs)

    def _fill_row(self, row: int, job: dict[str, Any]) -> None:
        job_id = str(job.get("id", ""))
        label = QTableWidgetItem(describe_job(job, self.own_ids))
        label.setToolTip(f"job {job_id}\n{job.get('message') or ''}".strip())
        label.setData(Qt.ItemDataRole.UserRole, job_id)
        self.table.setItem(row, 0, label)
        self.table.setItem(row, 1, QTableWidgetItem(state_text(job)))
        if job.get("state") in ("cancelled", "failed"):
            self.table.removeCellWidget(row, 2)  # how far it got before stopping is not worth a full bar
        else:
            bar = self.table.cellWidget(row, 2)
            if not isinstance(bar, QProgressBar):
                bar = QProgressBar()
                bar.setRange(0, 100)
                bar.setMaximumWidth(140)
                self.table.setCellWidget(row, 2, bar)
            fraction = (job.get("progress") or {}).get("fraction") or 0.0
            bar.setValue(100 if job.get("state") == "done" else int(round(fraction * 100)))
        if job.get("state") in ACTIVE_STATES:
            button = self.table.cellWidget(row, 3)
            # Kept across polls: a button replaced every second could vanish under the pointer mid-click.
            if not isinstance(button, QPushButton) or button.objectName() != f"cancel-{job_id}":
                button = QPushButton("Cancel")
                button.setToolTip("stop this job")
                button.setObjectName(f"cancel-{job_id}")
                button.clicked.connect(lambda _checked=False, j=job_id: self.cancel_requested.emit(j))
                self.table.setCellWidget(row, 3, button)
        else:  # a finished job's result may still be on its way to Krita or GIMP: nothing to press
            self.table.removeCellWidget(row, 3)

    def row_of(self, job_id: str) -> int | None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == job_id:
                return row
        return None

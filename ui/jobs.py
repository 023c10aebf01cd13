"""One upscale job of this window: sent, followed, fetched and cancelled through the client's RemoteJob, off the
GUI thread."""

from __future__ import annotations

import time
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtGui import QImage

from plugin.uprez_client import Client, JobCancelled, JobEvent, JobFailed, RemoteJob, status_text
from ui.background import run_in_background
from ui.imageio import Picture, from_raw


def decode_preview(event: JobEvent) -> QImage:
    """A `preview` event's JPEG as a QImage (null when it does not decode)."""
    image = QImage()
    if event.preview:
        image.loadFromData(event.preview, "JPEG")
    return image


class JobRunner(QObject):
    """Runs one job at a time; every signal arrives on the GUI thread."""

    submitted = pyqtSignal(str)
    progress = pyqtSignal(object)  # the engine's progress JobEvent
    note = pyqtSignal(str)  # queued behind other jobs, started, retrying after running out of memory
    preview = pyqtSignal(QImage)
    finished = pyqtSignal(object, float)  # result Picture, seconds from submit to result
    failed = pyqtSignal(object)  # the exception
    cancelled = pyqtSignal()
    _event = pyqtSignal(object, object)  # (RemoteJob, JobEvent) from the pool thread that follows the job

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._event.connect(self._on_event)
        self.client: Client | None = None
        self.job: RemoteJob | None = None
        self.job_id: str | None = None
        self.name = "image"
        self.icc: bytes | None = None
        self.running = False
        self._closing = False
        self._started_at = 0.0

    def start(self, client: Client, picture: Picture, mask: bytes | None, params: dict[str, Any]) -> None:
        """Submit `picture` (raw, at its own depth) with an optional one-byte-per-pixel mask."""
        if self.running:
            raise RuntimeError("a job is already running; cancel it first")
        if self._closing:
            raise RuntimeError("the window is closing")
        self.client, self.name, self.running = client, picture.name, True
        self.icc = picture.icc  # the result comes back in the picture's profile
        self.job_id, self._started_at = None, time.monotonic()
        # cancel_on_disconnect: a window that goes away (hangs up) cancels its own job.
        job = client.start(picture.raw(), picture.width, picture.height, picture.channels, picture.depth,
                           mask=mask, profile=picture.icc, region_only=False, client="Uprez window", **params)
        self.job = job

        def follow() -> None:  # on a pool thread, so an engine that dies mid-job reaches _on_failed
            for event in job.events():
                self._event.emit(job, event)

        run_in_background(follow, lambda _: None, lambda exc: self._on_failed(exc, job))

    def cancel(self) -> None:
        """Ask the engine to cancel (also during the upload); the `cancelled` signal follows when it has."""
        if self.running and self.job is not None:
            self.job.cancel()

    def _on_event(self, job: RemoteJob, event: JobEvent) -> None:
        if not self.running or job is not self.job:
            return
        kind = event.kind
        if kind == "submitted" and event.job is not None:
            self.job_id = event.job
            self.submitted.emit(event.job)
        elif kind in ("queued", "started", "retrying"):
            self.note.emit(status_text(event))
        elif kind == "progress":
            self.progress.emit(event)
        elif kind == "preview":
            image = decode_preview(event)
            if not image.isNull():
                self.preview.emit(image)
        elif kind == "done":
            run_in_background(lambda: self._fetch(job), self._on_result, lambda exc: self._on_failed(exc, job))
        elif kind == "failed":
            self._on_failed(JobFailed(event.message or "the job failed"), job)
        elif kind == "cancelled":
            self._end()
            self.cancelled.emit()

    def _fetch(self, job: RemoteJob) -> Picture:
        data, meta = job.result()
        picture = from_raw(data, meta["width"], meta["height"], meta["channels"], meta["depth"], self.name,
                           self.icc)
        job.forget()  # free its result on the engine now
        return picture

    def _on_result(self, picture: Picture) -> None:
        seconds = time.monotonic() - self._started_at
        self._end()
        self.finished.emit(picture, seconds)

    def _on_failed(self, exc: BaseException, job: RemoteJob | None = None) -> None:
        if not self.running or (job is not None and job is not self.job):
            return
        self._end()
        if isinstance(exc, JobCancelled):
            self.cancelled.emit()
        else:
            self.failed.emit(exc)

    def _end(self) -> None:
        self.running = False

    def own_job_ids(self) -> set[str]:
        """This runner's job id, as soon as the engine has answered the upload (before the GUI thread hears)."""
        job_id = self.job.id if self.job is not None else None
        return {job_id} if job_id is not None else set()

    def shutdown(self) -> None:
        """Stop this window's job: hang up on its event stream (the engine then cancels it), or cancel it
        directly when it is not followed yet, or as soon as the upload is answered."""
        self._closing = True
        if self.running and self.job is not None:
            self.job.close()
        self.running = False

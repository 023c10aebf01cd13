"""One upscale job of this window: submit, follow its events, fetch the result, cancel — all off the GUI thread."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtGui import QImage

from plugin.uprez_client import Client, EventStream, JobCancelled, JobFailed
from ui.background import run_in_background
from ui.imageio import Picture, from_raw


def progress_text(event: dict[str, Any]) -> str:
    """'stage 1/2: decoding tile 7/30 · about 4 s left' from a progress event (the engine's phase text; from an
    engine that sends none, 'stage 1/2 · step 3/5 · about 4 s left')."""
    parts = []
    if event.get("phase"):
        parts.append(str(event["phase"]))
    else:
        if event.get("stages"):
            parts.append(f"stage {event.get('stage', 0)}/{event['stages']}")
        if event.get("steps"):
            parts.append(f"step {event.get('step', 0)}/{event['steps']}")
    eta = event.get("eta_s")
    fraction = event.get("fraction")
    if isinstance(eta, (int, float)) and not (isinstance(fraction, (int, float)) and fraction >= 1):
        parts.append(f"about {eta:.0f} s left" if eta >= 1 else "less than a second left")
    return " · ".join(parts)


def decode_preview(event: dict[str, Any]) -> QImage:
    """A `preview` event's base64 JPEG as a QImage (null when it does not decode)."""
    image = QImage()
    try:
        image.loadFromData(base64.b64decode(event.get("image", "")), "JPEG")
    except ValueError:
        return QImage()
    return image


class JobRunner(QObject):
    """Runs one job at a time; every signal arrives on the GUI thread."""

    submitted = pyqtSignal(str)
    progress = pyqtSignal(dict)  # the engine's progress event
    note = pyqtSignal(str)  # queued behind other jobs, started, retrying after running out of memory
    preview = pyqtSignal(QImage)
    finished = pyqtSignal(object, float)  # result Picture, seconds from submit to result
    failed = pyqtSignal(object)  # the exception
    cancelled = pyqtSignal()
    _event = pyqtSignal(dict)  # from the event stream's thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._event.connect(self._on_event)
        self.client: Client | None = None
        self.job_id: str | None = None
        self.stream: EventStream | None = None
        self.name = "image"
        self.icc: bytes | None = None
        self.running = False
        self._cancel_requested = False
        self._started_at = 0.0
        # Closing the window can come while the upload runs, before there is a job id or an event stream
        # to hang up: the upload thread checks this flag (under the lock) as soon as the engine answers.
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._submitted_job: str | None = None  # the job id as soon as the upload thread has it

    def start(self, client: Client, picture: Picture, mask: bytes | None, params: dict[str, Any]) -> None:
        """Submit `picture` (raw, at its own depth) with an optional one-byte-per-pixel mask."""
        if self.running:
            raise RuntimeError("a job is already running; cancel it first")
        if self._closing.is_set():
            raise RuntimeError("the window is closing")
        self.client, self.name, self.running = client, picture.name, True
        self.icc = picture.icc  # the result comes back in the picture's profile
        self.job_id, self._cancel_requested, self._started_at = None, False, time.monotonic()
        self._submitted_job = None
        raw = picture.raw()  # copied now: the picture may change while the upload runs

        def submit() -> str:
            job_id = client.submit_raw(raw, picture.width, picture.height, picture.channels, picture.depth,
                                       mask=mask, profile=picture.icc, region_only=False, client="Uprez window",
                                       **params)
            with self._lock:
                closing = self._closing.is_set()
                if not closing:
                    self._submitted_job = job_id
            if closing:  # the window closed during the upload: nobody will follow or fetch this job
                _cancel_quietly(client, job_id)
            return job_id

        run_in_background(submit, self._on_submitted, self._on_failed)

    def cancel(self) -> None:
        """Ask the engine to cancel; the `cancelled` signal follows when it has."""
        if not self.running:
            return
        self._cancel_requested = True
        if self.job_id is not None and self.client is not None:
            client, job_id = self.client, self.job_id
            run_in_background(lambda: client.cancel(job_id), lambda _: None, self._on_failed)

    def _on_submitted(self, job_id: str) -> None:
        if not self.running:  # shut down meanwhile: the job was cancelled by shutdown() or by submit()
            return
        self.job_id = job_id
        self.submitted.emit(job_id)
        if self._cancel_requested:  # Cancel was pressed during the upload
            self._cancel_requested = False
            self.cancel()
        # cancel_on_disconnect: closing the window (which hangs up) cancels this window's own job. The stream
        # runs on a pool thread rather than listen()'s own, so an engine that dies mid-job reaches _on_failed.
        assert self.client is not None
        self.stream = EventStream(self.client, job_id, self._event.emit, cancel_on_disconnect=True)
        run_in_background(self.stream.run, lambda _final: None, self._on_failed)

    def _on_event(self, event: dict[str, Any]) -> None:
        if not self.running or event.get("job") != self.job_id:
            return
        kind = event.get("event")
        if kind == "queued" and event.get("position"):
            self.note.emit(f"Waiting in the engine's queue (position {event['position']})…")
        elif kind == "started":
            self.note.emit("Started (loading the model first if it is not loaded)…")
        elif kind == "retrying":
            self.note.emit(f"Retrying with smaller tiles: {event.get('message', '')}")
        elif kind == "progress":
            self.progress.emit(event)
        elif kind == "preview":
            image = decode_preview(event)
            if not image.isNull():
                self.preview.emit(image)
        elif kind == "done":
            client, job_id = self.client, self.job_id
            assert client is not None and job_id is not None
            run_in_background(lambda: self._fetch(client, job_id), self._on_result, self._on_failed)
        elif kind == "failed":
            self._on_failed(JobFailed(event.get("message") or "the job failed"))
        elif kind == "cancelled":
            self._end()
            self.cancelled.emit()

    def _fetch(self, client: Client, job_id: str) -> Picture:
        data, meta = client.result(job_id)
        picture = from_raw(data, meta["width"], meta["height"], meta["channels"], meta["depth"], self.name,
                           self.icc)
        client.cancel(job_id)  # for a finished job: forget it and free its result on the engine
        return picture

    def _on_result(self, picture: Picture) -> None:
        seconds = time.monotonic() - self._started_at
        self._end()
        self.finished.emit(picture, seconds)

    def _on_failed(self, exc: BaseException) -> None:
        if not self.running:
            return
        self._end()
        if isinstance(exc, JobCancelled):
            self.cancelled.emit()
        else:
            self.failed.emit(exc)

    def _end(self) -> None:
        self.running = False
        self.stream = None  # its thread ends with the stream

    def own_job_ids(self) -> set[str]:
        """This runner's job ids known so far (the current one may not have reached the GUI thread yet)."""
        with self._lock:
            return {job for job in (self.job_id, self._submitted_job) if job is not None}

    def shutdown(self) -> None:
        """Stop this window's job: hang up on its event stream (the engine then cancels it), or cancel it
        directly when its id came back but its stream is not open yet, or leave a flag for the upload thread."""
        with self._lock:
            self._closing.set()
            unfollowed = self._submitted_job if self.running and self.stream is None else None
        stream = self.stream
        if stream is not None:
            stream.close()
        elif unfollowed is not None and self.client is not None:
            client = self.client
            # Not a pool thread: Python waits for this one at exit, so the cancel is sent even as the app quits.
            threading.Thread(target=_cancel_quietly, args=(client, unfollowed), name="uprez-cancel").start()
        self.running = False


def _cancel_quietly(client: Client, job_id: str) -> None:
    """Cancel a job nobody is left to hear about; an engine that is gone has nothing left to cancel."""
    with contextlib.suppress(Exception):
        Client(client.url, client.token, timeout=5.0).cancel(job_id)

"""One upscale job: pixels read on the GUI thread, network on a worker thread, the result added back on the GUI thread.

The worker only talks HTTP; Krita objects are touched only in slots that Qt delivers on the GUI thread
(signals emitted from the worker are queued there). Cancelling asks the engine to stop; closing the
document or Krita cancels too (see extension.py), and a result for a closed document is dropped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from . import document as doc_ops
from .client_import import idle, launcher, uprez_client
from .qt import QObject, Signal, process_events

PREVIEW_EVERY = 2  # a preview every other denoising step: each costs the engine a small VAE decode
RUNNING: set[UpscaleJob] = set()  # the jobs extension.py cancels when their document or Krita closes


class UpscaleFailed(RuntimeError):
    """The job did not produce a result; the message is the engine's (or says what to do)."""


class UpscaleCancelled(UpscaleFailed):
    pass


class UpscaleJob(QObject):
    """`start()`, then follow `event` (engine events as dicts) and `finished` (the job itself)."""

    event = Signal(object)
    finished = Signal(object)
    _arrived = Signal(object)  # worker -> GUI thread: ("done", data, meta) / ("failed"|"cancelled", message)

    def __init__(self, source: doc_ops.Source, client: Any = None,
                 start_engine: bool = False) -> None:
        super().__init__()
        self.source = source
        self.client = client
        self.start_engine = start_engine
        self.job_id: str | None = None
        self.state = "new"  # new -> running -> done | failed | cancelled
        self.message = ""
        self.output: Any = None  # the new layer, or the new document
        self._cancel_requested = threading.Event()
        self._cancel_lock = threading.Lock()
        self._cancel_sent = False
        self._arrived.connect(self._on_arrived)

    # -- GUI thread -----------------------------------------------------------------------------------
    def start(self) -> UpscaleJob:
        self.state = "running"
        RUNNING.add(self)
        threading.Thread(target=self._work, name="uprez-krita-job", daemon=True).start()
        return self

    def cancel(self) -> None:
        """Ask the engine to stop (off the GUI thread); the document stays as it was."""
        if self.state != "running" or self._cancel_requested.is_set():
            return
        self._cancel_requested.set()
        if self.job_id is not None:
            threading.Thread(target=self._send_cancel, daemon=True).start()

    def wait(self, timeout: float | None = None) -> Any:
        """Keep Krita's events flowing until the job ends; returns the output or raises UpscaleFailed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state == "running":
            process_events()
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                deadline = None
            time.sleep(0.01)
        process_events()
        if self.state == "cancelled":
            raise UpscaleCancelled(self.message)
        if self.state != "done":
            raise UpscaleFailed(self.message)
        return self.output

    def document_closed(self) -> None:
        self.cancel()

    def _on_arrived(self, outcome: tuple) -> None:
        kind = outcome[0]
        if kind == "done" and not self._cancel_requested.is_set():
            if not doc_ops.is_open(self.source.document):
                self._finish("cancelled", "the document was closed; the result was dropped")
                return
            try:
                self.output = doc_ops.add_result(self.source, outcome[1], outcome[2])
            except Exception as exc:  # the document is as it was: nothing was added before the error
                self._finish("failed", f"could not add the result to the document: {exc}")
                return
            self._finish("done", "")
        elif kind == "done" or kind == "cancelled":
            self._finish("cancelled", outcome[1] if kind == "cancelled" else "cancelled")
        else:
            self._finish("failed", outcome[1])

    def _finish(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        RUNNING.discard(self)
        self.finished.emit(self)

    # -- worker thread --------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            data, meta = self._run()
        except uprez_client.JobCancelled as exc:
            self._arrived.emit(("cancelled", str(exc) or "cancelled"))
        except uprez_client.UprezClientError as exc:
            self._arrived.emit(("failed", str(exc)))
        except Exception as exc:  # a bug here must still end the job, not leave a dialog spinning
            self._arrived.emit(("failed", f"{type(exc).__name__}: {exc}"))
        else:
            self._arrived.emit(("done", data, meta))

    def _run(self) -> tuple[bytes, dict[str, Any]]:
        client = self.client or uprez_client.Client()
        if self.start_engine:
            client = launcher.connect(client, lambda: self.event.emit({"event": "starting_engine"}))
        note = idle.idle_note(client.health())  # EngineNotRunning says how to start it by hand
        if note is not None:  # not an error: the job loads the model again
            self.event.emit({"event": "engine_idle", "message": note})
        self.client = client
        if self._cancel_requested.is_set():
            raise uprez_client.JobCancelled("cancelled before it was sent")
        src = self.source
        read = src.plan.read
        params = dict(src.plan.params)
        params.setdefault("preview_every", PREVIEW_EVERY)
        params.setdefault("client", "Krita")  # names the job in other apps' queue views
        self.job_id = client.submit_raw(src.pixels, read.width, read.height, src.fmt.channels, src.fmt.depth,
                                        mask=src.mask, profile=src.profile, **params)
        if self._cancel_requested.is_set():  # cancel() may have run before the id existed
            self._send_cancel()
        client.wait(self.job_id, self.event.emit)
        return client.result(self.job_id)

    def _send_cancel(self) -> None:
        with self._cancel_lock:  # once only: a second DELETE would make the engine forget the job
            if self._cancel_sent:
                return
            self._cancel_sent = True
        with contextlib.suppress(uprez_client.UprezClientError):  # it may have ended meanwhile; events say how
            self.client.cancel(self.job_id)


def cancel_all() -> None:
    for job in list(RUNNING):
        job.cancel()

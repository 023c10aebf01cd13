"""One upscale job: pixels read on the GUI thread, network on a worker thread, the result added back on the GUI thread.

The worker only talks HTTP; Krita objects are touched only in slots that Qt delivers on the GUI thread
(signals emitted from the worker are queued there). Cancelling asks the engine to stop; closing the
document or Krita cancels too (see extension.py), and a result for a closed document is dropped.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from . import document as doc_ops
from .client_import import idle, remote_choice, uprez_client
from .qt import QObject, Signal, process_events

PREVIEW_EVERY = 2  # a preview every other denoising step: each costs the engine a small VAE decode
RUNNING: set[UpscaleJob] = set()  # the jobs extension.py cancels when their document or Krita closes


class UpscaleFailed(RuntimeError):
    """The job did not produce a result; the message is the engine's (or says what to do)."""


class UpscaleCancelled(UpscaleFailed):
    pass


class UpscaleJob(QObject):
    """`start()`, then follow `event` (each uprez_client.JobEvent) and `finished` (the job itself)."""

    event = Signal(object)
    finished = Signal(object)
    _arrived = Signal(object)  # worker -> GUI thread: ("done", data, meta) / ("failed"|"cancelled", message)

    def __init__(self, source: doc_ops.Source, client: Any = None,
                 start_engine: bool = False) -> None:
        super().__init__()
        self.source = source
        self.client = client
        self.start_engine = start_engine
        self.remote: Any = None  # the uprez_client.RemoteJob once the upload has begun
        self.state = "new"  # new -> running -> done | failed | cancelled
        self.message = ""
        self.output: Any = None  # the new layer, or the new document
        self._cancel_requested = threading.Event()
        self._lock = threading.Lock()  # between cancel() and the worker handing over `remote`
        self._arrived.connect(self._on_arrived)

    @property
    def job_id(self) -> str | None:
        return self.remote.id if self.remote is not None else None

    # -- GUI thread -----------------------------------------------------------------------------------
    def start(self) -> UpscaleJob:
        self.state = "running"
        RUNNING.add(self)
        threading.Thread(target=self._work, name="uprez-krita-job", daemon=True).start()
        return self

    def cancel(self) -> None:
        """Ask the engine to stop (it returns at once); the document stays as it was."""
        if self.state != "running":
            return
        with self._lock:
            self._cancel_requested.set()
            remote = self.remote
        if remote is not None:
            remote.cancel()  # also before the engine has answered the upload: sent when the id arrives

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
        JobEvent = uprez_client.JobEvent
        # The remote engine chosen in the dialog (never started from here), else the local one found as before.
        client = self.client or remote_choice.client_for("krita")
        if self.start_engine:
            client = remote_choice.connect("krita", lambda: self.event.emit(JobEvent("starting_engine")), client)
        note = idle.idle_note(client.health())  # EngineNotRunning says how to start it by hand
        if note is not None:  # not an error: the job loads the model again
            self.event.emit(JobEvent("engine_idle", message=note))
        self.client = client
        src = self.source
        read = src.plan.placement.crop
        params = dict(src.plan.params)
        params.setdefault("preview_every", PREVIEW_EVERY)
        params.setdefault("client", "Krita")  # names the job in other apps' queue views
        with self._lock:
            if self._cancel_requested.is_set():
                raise uprez_client.JobCancelled("cancelled before it was sent")
            self.remote = client.start(src.pixels, read.width, read.height, src.fmt.channels, src.fmt.depth,
                                       mask=src.mask, profile=src.profile, **params)
        self.remote.wait(self.event.emit)  # raises JobFailed / JobCancelled
        return self.remote.result()


def cancel_all() -> None:
    for job in list(RUNNING):
        job.cancel()

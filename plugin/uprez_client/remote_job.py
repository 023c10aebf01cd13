"""One job on the engine as a handle: `Client.start(...)` returns a RemoteJob; its `events()` yields typed JobEvents.

The upload and the event stream run on the job's own thread, so `cancel()` works at any moment: before the
engine has answered the upload (the cancel is remembered and sent as soon as the job id arrives) as well as
while the job is queued or running. After `cancel()` the job ends as cancelled, whatever the engine did meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .errors import JobCancelled, JobFailed, UprezClientError

TERMINAL_KINDS = ("done", "failed", "cancelled")
CANCEL_TIMEOUT_S = 5.0  # a cancel may be sent while the app quits: it must not hold the exit up for long
_END = object()  # the job's thread has nothing more to say


@dataclass(frozen=True)
class ResultInfo:
    """What a `done` event says the result is; `size` is its length in bytes."""

    format: str
    width: int
    height: int
    channels: str
    depth: int
    size: int


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job, typed.

    `kind`: the engine's `queued`, `started`, `progress`, `preview`, `retrying`, `done`, `failed`, `cancelled`;
    the client's `submitted` (the upload was accepted: `job` is known from here on); and the front ends'
    `starting_engine` and `engine_idle` (said before the upload, `message` = the idle note).
    """

    kind: str
    job: str | None = None
    fraction: float | None = None  # 0..1 over the whole job: progress events, 0 when queued/retrying, 1 when done
    phase: str = ""  # what runs now, for people ("stage 2/2: decoding tile 7/30"); "" from older engines
    stage: int = 0
    stages: int = 0
    step: int = 0
    steps: int = 0
    eta_s: float | None = None
    position: int | None = None  # 1-based place in the queue
    model: str = ""  # `started`: the model that runs the job
    preview: bytes | None = None  # `preview`: a JPEG of the predicted result (at most 256 px a side)
    result: ResultInfo | None = None  # `done`
    message: str = ""  # `failed`, `cancelled`, `retrying`, `engine_idle`

    @property
    def final(self) -> bool:
        return self.kind in TERMINAL_KINDS

    @classmethod
    def from_engine(cls, data: dict) -> JobEvent:
        """The event for one Server-Sent Event's JSON data (fields of the wrong type are left out)."""
        kind = str(data.get("event") or "")
        fraction = _number(data.get("fraction"))
        if kind in ("queued", "retrying"):  # nothing done yet, or the retry starts over
            fraction = 0.0
        elif kind == "done":
            fraction = 1.0
        result = None
        if kind == "done":
            result = ResultInfo(str(data.get("format") or ""), _int(data.get("width")), _int(data.get("height")),
                                str(data.get("channels") or ""), _int(data.get("depth")), _int(data.get("bytes")))
        return cls(kind, _text(data.get("job")) or None, fraction, _text(data.get("phase")), _int(data.get("stage")),
                   _int(data.get("stages")), _int(data.get("step")), _int(data.get("steps")),
                   _number(data.get("eta_s")), _int(data.get("position")) or None, _text(data.get("model")),
                   _preview(data) if kind == "preview" else None, result, _text(data.get("message")))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _preview(data: dict) -> bytes | None:
    try:
        return base64.b64decode(_text(data.get("image")), validate=True) or None
    except (binascii.Error, ValueError):
        return None


def status_text(event: JobEvent) -> str:
    """The status line a person sees for `event` in every front end; "" when the line should stay as it is."""
    kind = event.kind
    if kind == "starting_engine":
        return "Starting the Uprez engine"
    if kind == "engine_idle":
        return f"Uprez {event.message or 'engine idle'}: loading it for this upscale"
    if kind == "submitted":
        return "Sent to the engine"
    if kind == "queued":
        where = f" (position {event.position})" if event.position else ""
        return f"Waiting in the engine's queue{where}"
    if kind == "started":
        name = event.model.rstrip("/").rsplit("/", 1)[-1] or "the model"
        return f"Upscaling with {name} (loading it first if needed)"
    if kind == "progress":
        return "Upscaling: " + _progress_detail(event)
    if kind == "retrying":
        return "Out of memory: the engine retries with smaller tiles" + (f" ({event.message})" if event.message else "")
    if kind == "done":
        return "Done: fetching the result"
    if kind == "failed":
        return f"Failed: {event.message or 'the job failed'}"
    if kind == "cancelled":
        return f"Cancelled: {event.message}" if event.message else "Cancelled"
    return ""


def _progress_detail(event: JobEvent) -> str:
    parts = []
    if event.phase:
        parts.append(event.phase)
    else:  # an engine from before work units says only the stage and step
        if event.stages:
            parts.append(f"stage {event.stage}/{event.stages}")
        if event.steps:
            parts.append(f"step {event.step}/{event.steps}")
    eta = event.eta_s
    if eta is not None and not (event.fraction is not None and event.fraction >= 1):
        if eta < 1:
            parts.append("less than a second left")
        elif eta < 90:
            parts.append(f"about {eta:.0f} s left")
        else:
            parts.append(f"about {eta / 60:.0f} min left")
    return " · ".join(parts) or "working"


class RemoteJob:
    """A job being sent to, or run by, the engine. Made by `Client.start`; every method is thread-safe.

    `events()` yields each JobEvent until the job ends (its last one is `done`, `failed` or `cancelled`) and
    raises what the upload or the stream raised (RejectedInput, QueueFull, EngineNotRunning...). One reader.
    """

    def __init__(self, client: Any, submit: Callable[[], str], cancel_on_disconnect: bool = True) -> None:
        self._client = client
        self._submit = submit
        self._cancel_on_disconnect = cancel_on_disconnect
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._id: str | None = None
        self._final: JobEvent | None = None
        self._cancel_requested = False
        self._cancel_sent = False
        self._closed = False
        self._stream: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uprez-job", daemon=True)

    def _begin(self) -> RemoteJob:
        self._thread.start()
        return self

    # -- any thread -----------------------------------------------------------------------------------
    @property
    def id(self) -> str | None:
        """The engine's job id; None until the engine has answered the upload."""
        return self._id

    @property
    def final(self) -> JobEvent | None:
        """The job's last event (done, failed or cancelled) once the job's thread has seen it."""
        return self._final

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def cancel(self) -> None:
        """Ask the engine to stop the job; returns at once. Before the id is known, it is sent when it arrives."""
        with self._lock:
            if self._cancel_requested or self._final is not None:
                return
            self._cancel_requested = True
            job_id = self._id
        if job_id is not None:
            # Not a daemon thread: Python waits for it at exit, so a cancel is sent even as the app quits.
            threading.Thread(target=self._send_cancel, name="uprez-cancel").start()

    def close(self) -> None:
        """Stop following: hang up on the event stream (with cancel_on_disconnect the engine cancels the job),
        or cancel the job outright when nobody follows it yet. `events()` then ends."""
        with self._lock:
            self._closed = True
            stream, job_id, final = self._stream, self._id, self._final
        if stream is not None:
            stream.close()
        elif job_id is not None and final is None and self._cancel_on_disconnect:
            threading.Thread(target=self._send_cancel, name="uprez-cancel").start()

    def events(self) -> Iterator[JobEvent]:
        while True:
            item = self._events.get()
            if item is _END:
                self._events.put(_END)  # a second call ends at once too, raising the same error
                if self._error is not None:
                    raise self._error
                return
            if isinstance(item, BaseException):
                self._error = item  # the job's thread puts _END right after
                continue
            yield item

    def wait(self, on_event: Callable[[JobEvent], None] | None = None) -> JobEvent:
        """Follow the job to its end, calling `on_event` for each event; returns `done`, else raises JobFailed or
        JobCancelled with the engine's message."""
        for event in self.events():
            if on_event is not None:
                on_event(event)
        final = self._final
        if final is None:
            raise JobCancelled("the job was left (its event stream was closed)")
        if final.kind == "failed":
            raise JobFailed(final.message or "the job failed")
        if final.kind == "cancelled":
            raise JobCancelled(final.message or "the job was cancelled")
        return final

    def result(self) -> tuple[bytes, dict]:
        """The output bytes and their format (Client.result) of a job that is done."""
        if self._id is None:
            raise UprezClientError("the job has no result: the engine never accepted it")
        return self._client.result(self._id)

    def forget(self) -> None:
        """Let the engine free a finished job's result now rather than after its TTL."""
        if self._id is not None:
            self._client.cancel(self._id, timeout=CANCEL_TIMEOUT_S)

    # -- the job's thread -----------------------------------------------------------------------------
    def _put(self, item: object) -> None:
        self._events.put(item)

    def _run(self) -> None:
        try:
            self._upload_and_follow()
        except BaseException as exc:  # handed to the reader of events()
            self._put(exc)
        finally:
            self._put(_END)

    def _upload_and_follow(self) -> None:
        with self._lock:
            skip = self._cancel_requested or self._closed
        if skip:
            self._end(JobEvent("cancelled", message="cancelled before it was sent"))
            return
        job_id = self._submit()
        with self._lock:
            self._id = job_id
            cancel, closed = self._cancel_requested, self._closed
        self._put(JobEvent("submitted", job=job_id))
        if cancel or (closed and self._cancel_on_disconnect):  # cancel() or close() came during the upload
            self._send_cancel()
        if closed:
            return
        from .client import EventStream  # client.py imports this module for Client.start

        stream = EventStream(self._client, job_id, self._on_engine_event, self._cancel_on_disconnect)
        with self._lock:
            self._stream = stream
            closed = self._closed
        if closed:
            return
        stream.run()  # returns after the final event, or at once after close()

    def _on_engine_event(self, data: dict) -> None:
        event = JobEvent.from_engine(data)
        if event.kind == "done" and self._cancel_requested:
            # The job finished as the cancel went out: the engine may already have dropped its result.
            event = JobEvent("cancelled", job=event.job, message="cancelled as it finished; the result was dropped")
        if event.final:
            self._end(event)
        else:
            self._put(event)

    def _end(self, event: JobEvent) -> None:
        with self._lock:
            self._final = event
        self._put(event)

    def _send_cancel(self) -> None:
        with self._lock:  # once only: a second DELETE would make the engine forget the job's record
            if self._cancel_sent or self._id is None:
                return
            self._cancel_sent = True
            job_id = self._id
        # It may have ended meanwhile, or the engine is gone: the events say how it ended.
        with contextlib.suppress(UprezClientError):
            self._client.cancel(job_id, timeout=CANCEL_TIMEOUT_S)

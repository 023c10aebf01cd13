"""An idle engine gives its memory back, and an engine nobody started by hand goes away when it is not needed.

Three rules, checked a few times a second on one thread:
- **unload**: after `unload_after` seconds with no job queued or running and no open event stream, the loaded
  model is dropped (and the CUDA cache emptied); the next job loads it again.
- **idle exit**: an engine started on demand (by the window or a bridge, `UPREZ_STARTED_BY`) exits after
  `exit_after` seconds idle, removing its engine.json on the way out; the next front end starts a new one.
- **parent watch**: an engine the window started for itself gets the write end of a pipe as its stdin. The
  kernel closes that pipe when the window's process ends in any way (clean exit, SIGTERM, SIGKILL, a crash),
  so the engine reads end-of-file at once. This works the same on Linux and macOS (and Windows), needs no
  polling, and cannot be fooled by a reused pid, unlike polling the parent's pid; Linux's pidfd and macOS's
  kqueue NOTE_EXIT would each need their own code. Then the engine exits as soon as no job runs, no event
  stream is open and no request came for `LINGER_S` (other apps' jobs finish, and their results are fetched).

Once the engine has decided to stop, every request is answered 503 "stopping": a client that asked just then
never believes it is up, and `launcher.connect` waits for it to go and starts a new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from plugin.uprez_client.protocol import BRIDGE_FILE

log = logging.getLogger("uprez.server")

DEFAULT_UNLOAD_AFTER_S = 300.0  # five minutes without work: long enough for a person's next try
DEFAULT_EXIT_AFTER_S = 1200.0  # an engine started on demand lives twenty idle minutes after that
LINGER_S = 2.0  # after the parent is gone: quiet this long (a bridge fetches its result right after "done")
TICK_S = 0.25
ENV_UNLOAD_AFTER = "UPREZ_UNLOAD_AFTER"
ENV_EXIT_AFTER = "UPREZ_EXIT_AFTER"
ENV_STARTED_BY = "UPREZ_STARTED_BY"  # "window" or "bridge": set by whoever started the engine on demand
ENV_PARENT_WATCH = "UPREZ_PARENT_WATCH"  # "stdin": stdin is a pipe the starting process holds open


@dataclass(frozen=True)
class IdlePolicy:
    """When an idle engine unloads and exits; None = never."""

    unload_after: float | None = DEFAULT_UNLOAD_AFTER_S
    exit_after: float | None = None
    watch_parent: bool = False  # stdin is a pipe from the process that started us: EOF means it is gone

    def __post_init__(self) -> None:
        for name in ("unload_after", "exit_after"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidInput(f"{name.replace('_', '-')} must be more than 0 seconds (or never), got {value}")


def _seconds(value: Any, source: str) -> float | None:
    """A number of seconds from a flag, the environment or bridge.json; 0 (or less) means never."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{source} must be a number of seconds (0 = never), got {value!r}") from None
    return number if number > 0 else 0.0


def _bridge_settings(config_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((config_dir / BRIDGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def idle_policy(config_dir: Path, unload_after: float | None = None, exit_after: float | None = None,
                environ: dict[str, str] | None = None) -> IdlePolicy:
    """The policy from the flags, else the environment, else bridge.json, else the defaults.

    An engine someone started at a terminal never exits by itself (unless `exit_after` is given); one started
    on demand (`UPREZ_STARTED_BY` set) exits after `exit_after`, `UPREZ_EXIT_AFTER`, bridge.json's
    `exit_after` or DEFAULT_EXIT_AFTER_S.
    """
    env = os.environ if environ is None else environ
    bridge = _bridge_settings(config_dir)
    unload = next((v for v in (_seconds(unload_after, "--unload-after"),
                               _seconds(env.get(ENV_UNLOAD_AFTER, "").strip(), ENV_UNLOAD_AFTER),
                               _seconds(bridge.get("unload_after"), "unload_after in bridge.json"))
                   if v is not None), DEFAULT_UNLOAD_AFTER_S)
    on_demand = bool(env.get(ENV_STARTED_BY, "").strip())
    exit_ = _seconds(exit_after, "--exit-after")
    if exit_ is None and on_demand:
        exit_ = next((v for v in (_seconds(env.get(ENV_EXIT_AFTER, "").strip(), ENV_EXIT_AFTER),
                                  _seconds(bridge.get("exit_after"), "exit_after in bridge.json"))
                      if v is not None), DEFAULT_EXIT_AFTER_S)
    watch = env.get(ENV_PARENT_WATCH, "").strip() == "stdin"
    return IdlePolicy(unload_after=unload or None, exit_after=exit_ or None, watch_parent=watch)


def trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise, and the RSS would not fall)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # musl or another libc: nothing to trim with
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class IdleWatch:
    """Tracks work (jobs, event streams, requests) and unloads, exits, or follows the parent by the policy.

    `queue` needs `waiting`, `running` and `when_idle(fn)`; `runner` a `loaded` attribute and `unload()`.
    `exit` is set by whoever runs the server (it tells uvicorn to stop gracefully).
    """

    def __init__(self, policy: IdlePolicy, queue: Any, runner: Any, clock: Callable[[], float] = time.monotonic,
                 stdin_fd: int = 0) -> None:
        self.policy, self.queue, self.runner, self.clock = policy, queue, runner, clock
        self.exit: Callable[[], None] | None = None
        self.stop_reason = ""
        self.unloaded_model: str | None = None  # what the idle unload dropped, until a job loads a model again
        self._lock = threading.Lock()
        self._last_work = self._last_request = self._last_touch = clock()
        self._streams = 0
        self._requests = 0
        self._stopping = False
        self._parent_gone = threading.Event()
        self._done = threading.Event()
        self._stdin_fd = stdin_fd

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._loop, name="uprez-idle", daemon=True).start()
        if self.policy.watch_parent:
            if _is_pipe(self._stdin_fd):
                threading.Thread(target=self._watch_parent, name="uprez-parent", daemon=True).start()
            else:
                log.warning("%s=stdin, but stdin is not a pipe: not watching the parent", ENV_PARENT_WATCH)

    def stop(self) -> None:
        self._done.set()

    # -- what the HTTP layer reports ------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def parent_gone(self) -> bool:
        return self._parent_gone.is_set()

    def state(self) -> dict[str, Any]:
        """The idle fields of /v1/health and GET /v1/jobs."""
        loaded = getattr(self.runner, "loaded", None)
        return {"model_loaded": loaded is not None, "idle_unloaded": loaded is None and self.unloaded_model
                is not None, "unload_after": self.policy.unload_after, "exit_after": self.policy.exit_after}

    def touch(self) -> None:
        """Someone is about to use the engine (a health check before a submission): restart the exit clock
        (not the unload clock: a front end that checks health now and then must not keep a model loaded)."""
        with self._lock:
            self._last_touch = self.clock()

    def request_started(self) -> bool:
        """Count a request in; False once the engine is stopping (the caller answers 503)."""
        with self._lock:
            if self._stopping:
                return False
            self._requests += 1
            self._last_request = self.clock()
            return True

    def request_ended(self) -> None:
        with self._lock:
            self._requests -= 1
            self._last_request = self.clock()

    async def follow(self, stream: AsyncGenerator[str, None]) -> AsyncIterator[str]:
        """An event stream, counted as work for as long as it is open."""
        with self._lock:
            self._streams += 1
        try:
            async with contextlib.aclosing(stream):  # its own `finally` (cancel on disconnect) runs now, not at gc
                async for chunk in stream:
                    yield chunk
        finally:
            with self._lock:
                self._streams -= 1
                self._last_work = self.clock()

    # -- the watch ------------------------------------------------------------------------------------
    def _watch_parent(self) -> None:
        try:
            while os.read(self._stdin_fd, 4096):
                pass  # nobody writes; a read returns b"" only when every write end is closed
        except OSError:
            pass
        log.warning("the process that started this engine is gone; stopping once no job needs the engine")
        self._parent_gone.set()

    def _loop(self) -> None:
        while not self._done.wait(TICK_S):
            try:
                if self.check():
                    return
            except Exception:  # the watch must not die silently and leave an engine that never unloads
                log.exception("idle watch failed")

    def check(self) -> bool:
        """One look: unload or stop as the policy says; True once the engine is stopping."""
        now = self.clock()
        busy = bool(self.queue.waiting) or self.queue.running is not None or getattr(self.queue, "warming", False)
        with self._lock:
            if busy or self._streams:
                self._last_work = now
            idle_for = now - self._last_work
            untouched_for = now - max(self._last_work, self._last_touch)
        if getattr(self.runner, "loaded", None) is not None:
            self.unloaded_model = None
            unload_after = self.policy.unload_after
            if unload_after is not None and idle_for >= unload_after:
                self.queue.when_idle(self._unload)
        reason = ""
        if self._parent_gone.is_set():
            reason = "the process that started it is gone"
        elif self.policy.exit_after is not None and untouched_for >= self.policy.exit_after:
            reason = f"it was started on demand and has been idle for {self.policy.exit_after:g} s"
        if not reason:
            return False
        with self._lock:
            # After the parent went, a bridge fetches its result right after its job's end: give it LINGER_S.
            lingering = self._parent_gone.is_set() and now - self._last_request < LINGER_S
            if busy or self._streams or self._requests or lingering:
                return False
            self._stopping = True  # from here on every request gets 503: nobody sees a dying engine as up
        self.stop_reason = reason
        log.warning("uprez engine stopping: %s", reason)
        if self.exit is not None:
            self.exit()
        return True

    def _unload(self) -> None:
        """Runs with the queue locked and empty, so no job starts while the model goes."""
        model = getattr(self.runner, "loaded", None)
        unload = getattr(self.runner, "unload", None)
        if model is None or unload is None:
            return
        unload()
        self.unloaded_model = model
        log.warning("idle for %g s: unloaded %s; the next job loads it again", self.policy.unload_after, model)


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


class ActivityMiddleware:
    """Counts HTTP requests in and out for the watch, and answers 503 once the engine is stopping."""

    def __init__(self, app: Any, watch: IdleWatch) -> None:
        self.app, self.watch = app, watch

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.watch.request_started():
            body = json.dumps({"error": f"the engine is stopping ({self.watch.stop_reason or 'idle'}); start it "
                               "again (the editors and the window do so by themselves)", "status": 503,
                               "stopping": True}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                    (b"retry-after", b"2")]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.watch.request_ended()

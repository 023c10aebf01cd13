"""Finding the engine, or starting one as a child process when none answers (and stopping only that one)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal

from plugin.uprez_client import Client, EngineNotRunning, remote_choice
from plugin.uprez_client.launcher import START_TIMEOUT_S
from ui.background import run_in_background
from ui.settings_store import config_folder

ACTIVE_STATES = ("queued", "running")
REMOTE_APP = "window"  # this front end's remote-engine choice (remote_choice; ui/remote_dialog.py)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10.0


class EngineStartFailed(EngineNotRunning):
    """No engine answered and the one this window tried to start did not come up."""


class EngineProcess:
    """`python -m engine.cli serve --port 0` as a child; its URL comes from the engine.json it writes."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "engine.cli", "serve", "--port", "0"]
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the child writes to it for as long as it runs
        # start() runs on a worker thread and stop() on the GUI thread: without the lock and the flag, a window
        # closed just before Popen would find nothing to stop, and the engine would start with nobody to stop it.
        self._lock = threading.Lock()
        self._stopped = False

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start it and wait until it answers; returns its URL or raises EngineStartFailed with its output."""
        env = dict(os.environ)
        # Works from a checkout that is not installed, too: the child finds `engine` next to `ui`.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        # Started on demand, and watching us: its stdin is a pipe only this process holds, which the kernel
        # closes however this process ends (even SIGKILL); the engine then exits once no other app's job
        # needs it (engine/server/idle.py). It also exits by itself after a long idle time.
        env.update(UPREZ_STARTED_BY="window", UPREZ_PARENT_WATCH="stdin")
        with self._lock:
            if self._stopped:
                raise EngineStartFailed("the window closed before the engine was started")
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=self._log,
                                            stderr=subprocess.STDOUT, env=env)
        engine_file = config_folder() / "engine.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineStartFailed(f"the engine this window started exited (code {self.process.returncode}): "
                                        f"{self.output_tail() or 'no output'}")
            url = self._published_url(engine_file)
            if url is not None:
                try:
                    Client(url).health()
                except EngineNotRunning:
                    pass
                else:
                    self.url = url
                    return url
            time.sleep(0.1)
        tail = self.output_tail()  # before stop(), which closes the log
        self.stop()
        raise EngineStartFailed(f"the engine this window started did not answer within {timeout:.0f} s: "
                                f"{tail or 'no output'}")

    def _published_url(self, engine_file: Path) -> str | None:
        """engine.json's URL once it names our child (an older file may belong to another engine)."""
        try:
            data = json.loads(engine_file.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and self.process is not None and data.get("pid") == self.process.pid:
            url = data.get("url")
            return url if isinstance(url, str) else None
        return None

    def output_tail(self, limit: int = 600) -> str:
        if self._log.closed:
            return ""
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - limit))
        return self._log.read().decode("utf-8", "replace").strip()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the engine removes its engine.json), then kill if it does not stop in time; for good:
        a start() that has not reached Popen yet will not start it."""
        with self._lock:
            self._stopped = True
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout)
        self.release()

    def release(self) -> None:
        """Let go of the child without stopping it: closes this side's copy of its log, and its stdin pipe,
        which tells it we are gone (it exits when the jobs it still has are done)."""
        self._log.close()
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()


class EngineLink(QObject):
    """The window's connection: `connect_engine()` finds an engine or starts one, off the GUI thread."""

    status = pyqtSignal(str)  # "connecting…", "starting engine…"
    connected = pyqtSignal(object, dict, dict)  # Client, health, models
    failed = pyqtSignal(object)  # the exception

    def __init__(self, auto_start: bool = True, command: list[str] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.auto_start = auto_start
        self.command = command
        self.client: Client | None = None
        self.started: EngineProcess | None = None  # set only when this window started the engine
        self.busy = False
        self.left_running: str | None = None  # why shutdown() left the engine it started running
        self._lock = threading.Lock()  # _find (a worker thread) against shutdown (the GUI thread)
        self._closing = False

    def connect_engine(self) -> None:
        if self.busy:
            return
        self.busy = True
        self.status.emit("connecting to the engine…")
        run_in_background(self._find, self._found, self._failed)

    def _find(self) -> tuple[Client, dict, dict]:
        remote = remote_choice.load(REMOTE_APP)
        if remote is not None:  # the person's choice wins over engine.json; a remote engine is never started here
            client = remote_choice.client_for(REMOTE_APP)
            return client, client.health(), client.models()
        try:
            client = Client()
            # models() needs the token, so a foreign engine that refuses ours fails here and not at Upscale.
            return client, client.health(), client.models()
        except EngineNotRunning:
            if not self.auto_start or (self.started is not None and self.started.running):
                raise
        self.status.emit("starting engine…")  # queued to the GUI thread like any cross-thread signal
        process = EngineProcess(self.command)
        with self._lock:
            if self._closing:
                raise EngineStartFailed("the window closed before the engine was started")
            self.started = process
        url = process.start()
        client = Client(url)  # read the token now: the engine creates it at its first start
        return client, client.health(), client.models()

    def _found(self, found: tuple[Client, dict, dict]) -> None:
        self.busy = False
        self.client = found[0]
        self.connected.emit(*found)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.client = None
        self.failed.emit(exc)

    def shutdown(self, own_jobs: Collection[str] = ()) -> None:
        """Stop the engine if, and only if, this window started it and no other app has work queued or running
        on it (those jobs would be lost); then it is left running and stderr says so. Only the first call acts."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            process = self.started
        if process is None:
            return
        others = self._other_jobs(process, set(own_jobs))
        if not others:
            process.stop()
            return
        counts = Counter(str((job.get("params") or {}).get("client") or "another app") for job in others)
        apps = ", ".join(f"{n} from {name}" for name, n in counts.most_common())
        pid = process.process.pid if process.process is not None else "?"
        self.left_running = (f"the engine this window started ({process.url or 'starting'}, process {pid}) is left "
                             f"running: other apps still have jobs queued or running on it ({apps}). "
                             "It stops by itself when they are done.")
        print(f"uprez-gui: {self.left_running}", file=sys.stderr)
        self.status.emit(self.left_running)
        process.release()

    def _other_jobs(self, process: EngineProcess, own_jobs: set[str]) -> list[dict]:
        """The queued or running jobs on our engine that are not this window's; none if it does not answer."""
        url = self.client.url if self.client is not None else process.url
        if url is None or not process.running:
            return []
        token = self.client.token if self.client is not None else None
        try:
            jobs = Client(url, token, timeout=5.0).jobs()
        except Exception:  # an engine that cannot answer has nothing worth keeping it for
            return []
        return [job for job in jobs if isinstance(job, dict) and job.get("state") in ACTIVE_STATES
                and job.get("id") not in own_jobs]

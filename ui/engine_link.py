"""Finding the engine, or starting one as a child process when none answers (and stopping only that one)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal

from plugin.uprez_client import Client, EngineNotRunning
from ui.background import run_in_background
from ui.settings_store import config_folder

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0  # a cold start imports torch and loads the default model
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

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start it and wait until it answers; returns its URL or raises EngineStartFailed with its output."""
        env = dict(os.environ)
        # Works from a checkout that is not installed, too: the child finds `engine` next to `ui`.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
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
        self.stop()
        raise EngineStartFailed(f"the engine this window started did not answer within {timeout:.0f} s: "
                                f"{self.output_tail() or 'no output'}")

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
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - limit))
        return self._log.read().decode("utf-8", "replace").strip()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the engine removes its engine.json), then kill if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)


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

    def connect_engine(self) -> None:
        if self.busy:
            return
        self.busy = True
        self.status.emit("connecting to the engine…")
        run_in_background(self._find, self._found, self._failed)

    def _find(self) -> tuple[Client, dict, dict]:
        try:
            client = Client()
            # models() needs the token, so a foreign engine that refuses ours fails here and not at Upscale.
            return client, client.health(), client.models()
        except EngineNotRunning:
            if not self.auto_start or (self.started is not None and self.started.running):
                raise
        self.status.emit("starting engine…")  # queued to the GUI thread like any cross-thread signal
        process = EngineProcess(self.command)
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

    def shutdown(self) -> None:
        """Stop the engine if, and only if, this window started it."""
        if self.started is not None:
            self.started.stop()

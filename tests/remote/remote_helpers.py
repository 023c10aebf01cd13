"""A real `uprez serve --remote` process over TLS on 127.0.0.1, its tokens, and a proxy that breaks a download."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.cli import main as uprez

FAST = {"strength": 0.3, "steps": 8}  # about two model calls a stage on the tiny model


class RemoteEngine:
    """`uprez serve --remote --host 127.0.0.1 --port 0` in its own config folder, as a user starts it."""

    def __init__(self, config_dir: Path, *flags: str) -> None:
        self.config_dir = config_dir
        env = dict(os.environ, UPREZ_CONFIG_DIR=str(config_dir))
        env.pop("UPREZ_URL", None)
        self.log = config_dir / "serve.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--remote", "--host",
                                             "127.0.0.1", "--port", "0", "--device", "cpu", *flags],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uprez serve --remote exited: {self.log.read_text()[-2000:]}")
            try:
                info = json.loads((config_dir / "engine.json").read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.process.pid:
                self.info = info
                self.url, self.port, self.fingerprint = info["url"], info["port"], info["sha256"]
                return
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("uprez serve --remote did not publish engine.json within 120 s")

    def tokens(self, *args: str) -> tuple[int, str, str]:
        """`uprez tokens ARGS` in this process, against this engine's config folder: (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        previous = os.environ.get("UPREZ_CONFIG_DIR")
        os.environ["UPREZ_CONFIG_DIR"] = str(self.config_dir)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = uprez(["tokens", *args])
        finally:
            if previous is None:
                os.environ.pop("UPREZ_CONFIG_DIR", None)
            else:
                os.environ["UPREZ_CONFIG_DIR"] = previous
        return code, out.getvalue(), err.getvalue()

    def add_token(self, name: str) -> str:
        """A new named token's connection string, made as `uprez tokens add NAME --host 127.0.0.1` makes it."""
        code, out, err = self.tokens("add", name, "--host", "127.0.0.1")
        assert code == 0, err
        return out.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class BreakingProxy:
    """A TCP proxy to `port` that cuts the first connection carrying more than `cut_after` bytes back to the
    client (the TLS bytes pass through untouched, so the pin still holds): a Wi-Fi that drops mid-download."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.port, self.cut_after = port, cut_after
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url_port = self._listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, downstream: bool) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if downstream and self.cuts == 0 and sent + len(data) > self.cut_after:
                    self.cuts += 1
                    target.sendall(data[: self.cut_after - sent])
                    break  # drop both sides without a TLS close: the client sees the stream end early
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._stop = True
        self._listener.close()

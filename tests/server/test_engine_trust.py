"""Attack scripts kept as tests (issue 16 items 3-5 and 7): what the engine trusts on disk and on the wire.

Each runs the real `uprez serve` (or its token code) against a config folder set up as an attacker on the
same machine would leave it, and checks the engine refuses with a message that says how to fix it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.server.security import UnsafeConfig, load_or_create_token
from plugin.uprez_client import Client, engine_url
from plugin.uprez_client.discovery import engine_alive, process_start_time

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX owners and mode bits")
A_TOKEN = "A" * 43


def serve_once(config: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """`uprez serve --port 0` in `config`; these set-ups must make it exit at once (a hang means it served)."""
    env = dict(os.environ, UPREZ_CONFIG_DIR=str(config))
    env.pop("UPREZ_URL", None)
    return subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=timeout)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    return path


# -- item 3: the token file and its folder --------------------------------------------------------------
@posix_only
def test_a_token_file_that_is_a_symlink_is_refused_and_its_target_left_alone(tmp_path):
    config = private_dir(tmp_path / "config")
    target = tmp_path / "victim"
    target.write_text(A_TOKEN + "\n")
    os.chmod(target, 0o644)
    (config / "token").symlink_to(target)
    done = serve_once(config)
    assert done.returncode == 1 and "token file" in done.stderr and "symbolic link" in done.stderr, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not chmod'ed through the link
    assert not (config / "engine.json").exists()


@posix_only
def test_a_config_folder_others_can_write_is_refused(tmp_path):
    config = private_dir(tmp_path / "config")
    os.chmod(config, 0o777)
    done = serve_once(config)
    assert done.returncode == 1 and "chmod 700" in done.stderr, done.stderr
    assert not (config / "token").exists()


@posix_only
def test_a_token_readable_by_others_is_refused(tmp_path):
    config = private_dir(tmp_path / "config")
    (config / "token").write_text(A_TOKEN + "\n")
    os.chmod(config / "token", 0o644)
    with pytest.raises(UnsafeConfig, match="can be read by others"):
        load_or_create_token(config)


@posix_only
@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_token_or_folder_owned_by_someone_else_is_refused(tmp_path):
    config = private_dir(tmp_path / "config")
    (config / "token").write_text(A_TOKEN + "\n")
    os.chmod(config / "token", 0o600)
    os.chown(config / "token", 4321, 4321)
    with pytest.raises(UnsafeConfig, match="belongs to user id 4321"):
        load_or_create_token(config)
    os.chown(config, 4321, 4321)
    with pytest.raises(UnsafeConfig, match="folder .* belongs to user id 4321"):
        load_or_create_token(config)


def test_a_token_path_that_is_a_folder_is_not_reported_as_a_port_problem(tmp_path):
    config = private_dir(tmp_path / "config")
    (config / "token").mkdir()
    done = serve_once(config)
    assert done.returncode == 1 and "token file" in done.stderr and "not a regular file" in done.stderr, done.stderr
    assert "cannot listen" not in done.stderr


# -- item 4: two engines starting at once agree on one token ------------------------------------------------
def _race(config: str, barrier, results) -> None:
    barrier.wait()
    results.put(load_or_create_token(Path(config)))


@pytest.mark.parametrize("round_", range(6))
def test_engines_starting_at_once_all_use_the_token_on_disk(tmp_path, round_):
    config = private_dir(tmp_path / "config")
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    starters = 6
    barrier, results = context.Barrier(starters), context.Queue()
    processes = [context.Process(target=_race, args=(str(config), barrier, results)) for _ in range(starters)]
    for process in processes:
        process.start()
    tokens = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
    on_disk = (config / "token").read_text().strip()
    assert set(tokens) == {on_disk}, "an engine runs with a token that is no longer on disk"
    assert [p.name for p in config.iterdir()] == ["token"]  # no temporary files left behind


def test_an_engine_that_cannot_have_its_port_publishes_nothing(tmp_path):
    config = private_dir(tmp_path / "config")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        env = dict(os.environ, UPREZ_CONFIG_DIR=str(config))
        env.pop("UPREZ_URL", None)
        done = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--port", str(taken.getsockname()[1]),
                               "--device", "cpu"], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 1 and "cannot listen" in done.stderr, done.stderr
    assert list(config.iterdir()) == []  # no token (which another engine may already be using), no engine.json


# -- item 5: a crashed engine's engine.json --------------------------------------------------------------
class Recorder:
    """A listener at a dead engine's port, as another program would be: records the headers it is sent."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(4)
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.heads.append(data)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n'
                             b'Connection: close\r\n\r\n{"status":"ok"}')


def test_a_crashed_engines_file_is_ignored_and_no_token_reaches_its_port(serve_process):
    engine = serve_process()
    info = json.loads((engine.config_dir / "engine.json").read_text())
    assert info["started"] == process_start_time(engine.process.pid) and engine_alive(info)
    env = {"UPREZ_CONFIG_DIR": str(engine.config_dir)}
    assert engine_url(env) == info["url"]
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait(30)
    assert (engine.config_dir / "engine.json").exists()  # a crash leaves it behind
    recorder = Recorder(urlsplit(info["url"]).port)
    try:
        assert engine_url(env) != info["url"]
        token = (engine.config_dir / "token").read_text().strip()
        Client(info["url"], token=token).health()  # a client that still had the old URL
        assert recorder.heads and all(token.encode() not in head for head in recorder.heads)
        assert all(b"authorization" not in head.lower() for head in recorder.heads)
    finally:
        recorder.sock.close()


def test_an_engine_file_whose_pid_was_reused_is_ignored(tmp_path):
    from engine.server.config import write_engine_file

    write_engine_file(tmp_path, "http://127.0.0.1:5555", pid=os.getpid())
    env = {"UPREZ_CONFIG_DIR": str(tmp_path)}
    assert engine_url(env) == "http://127.0.0.1:5555"
    data = json.loads((tmp_path / "engine.json").read_text())
    (tmp_path / "engine.json").write_text(json.dumps(dict(data, started="1")))  # same pid, another process
    assert engine_url(env) != "http://127.0.0.1:5555"

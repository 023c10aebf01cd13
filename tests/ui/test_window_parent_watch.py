"""The engine the window starts for itself goes when the window's process goes, however it ends (SIGTERM, SIGKILL),
unless another app's job runs on it: then it goes right after that job. Real `uprez-gui` and engine processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from plugin.uprez_client import Client

ROOT = Path(__file__).resolve().parents[2]
SLOW = {"strength": 1.0, "steps": 200, "scale": 4}  # seconds of work on the tiny model
GONE_WITHIN_S = 10.0


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def parent_of(pid: int) -> int | None:
    try:
        # /proc/PID/stat: "pid (name) state ppid ..."; the name may hold spaces, so split after the last ")".
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def gone(pid: int) -> bool:
    """Ended (a zombie nobody has reaped yet counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" in status.read_text()


def wait_gone(pid: int, timeout: float = GONE_WITHIN_S) -> float:
    """Seconds until `pid` ended; fails the test after `timeout`."""
    began = time.monotonic()
    while not gone(pid):
        if time.monotonic() - began > timeout:
            pytest.fail(f"the engine (process {pid}) was still running {timeout:g} s after the window went")
        time.sleep(0.05)
    return time.monotonic() - began


@pytest.fixture
def window_with_engine(tmp_path):
    """`start() -> (window process, engine pid, engine client)`: `uprez-gui` with no engine around, so it
    starts its own; everything still running at the end is killed."""
    processes: list[int] = []

    def start() -> tuple[subprocess.Popen, int, Client]:
        config = tmp_path / f"config{len(processes)}"
        env = dict(os.environ, UPREZ_CONFIG_DIR=str(config), UPREZ_URL=dead_url(), QT_QPA_PLATFORM="offscreen")
        log = open(tmp_path / f"window{len(processes)}.log", "wb")  # noqa: SIM115 - the window writes to it
        window = subprocess.Popen([sys.executable, "-m", "ui.app"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        processes.append(window.pid)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert window.poll() is None, (tmp_path / f"window{len(processes) - 1}.log").read_text()[-2000:]
            try:
                info = json.loads((config / "engine.json").read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") and parent_of(info["pid"]) == window.pid:
                processes.append(info["pid"])
                client = Client(info["url"], (config / "token").read_text().strip())
                client.health()
                return window, info["pid"], client
            time.sleep(0.1)
        pytest.fail("the window did not start its engine within 180 s")

    yield start
    for pid in processes:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_windows_engine_goes_when_the_window_is_killed(window_with_engine, how):
    window, engine, client = window_with_engine()
    assert client.health()["exit_after"] is not None  # started on demand: it also exits after idling
    os.kill(window.pid, how)
    window.wait(10)
    took = wait_gone(engine)
    print(f"\nengine gone {took:.1f} s after the window got {signal.Signals(how).name}")


def test_another_apps_job_keeps_the_engine_until_it_is_done(window_with_engine, tiny_flux):
    window, engine, client = window_with_engine()
    pixels = bytes(range(256)) * (32 * 32 * 4 // 256)
    job = client.submit_raw(pixels, 32, 32, "RGBA", 8, model=str(tiny_flux), client="Krita", **SLOW)
    outcome: dict = {}

    def follow() -> None:  # Krita's side: follow the events, then fetch the result
        outcome["end"] = client.wait(job)
        outcome["result"] = client.result(job)
        outcome["fetched"] = time.monotonic()

    follower = threading.Thread(target=follow)
    follower.start()
    while client.job(job)["state"] == "queued":
        time.sleep(0.05)
    os.kill(window.pid, signal.SIGKILL)
    window.wait(10)
    while follower.is_alive():  # the job runs to its end: the engine stays
        assert not gone(engine), "the engine went away under another app's job"
        follower.join(0.1)
    assert outcome["end"]["state"] == "done" and len(outcome["result"][0]) == 128 * 128 * 4
    took = wait_gone(engine)
    print(f"\nengine gone {time.monotonic() - outcome['fetched']:.1f} s after Krita fetched its result "
          f"({took:.1f} s of waiting here)")

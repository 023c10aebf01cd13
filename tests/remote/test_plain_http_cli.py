"""`uprez serve` on a network address as a user runs it: plain HTTP is refused unless --insecure, which warns in
red; the loopback default is untouched (tests/server/test_serve_cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def serve(tmp_path, *flags: str, **options) -> subprocess.Popen:
    env = {**os.environ, "UPREZ_CONFIG_DIR": str(tmp_path)}
    env.pop("NO_COLOR", None)
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--device", "cpu", *flags],
                            env=env, stderr=subprocess.PIPE, text=True, **options)


def test_plain_http_on_a_network_address_is_refused(tmp_path):
    process = serve(tmp_path, "--host", "0.0.0.0")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "refusing to serve plain HTTP on 0.0.0.0" in stderr and "--remote" in stderr and "--insecure" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "engine.json").exists() and not (tmp_path / "token").exists()  # nothing was published


def test_insecure_plain_http_is_served_with_a_red_warning(tmp_path):
    process = serve(tmp_path, "--host", "0.0.0.0", "--insecure")
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "engine.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    warning = next(line for line in stderr.splitlines() if "plain HTTP on 0.0.0.0" in line)
    assert warning.startswith("\033[1;31m") and warning.endswith("\033[0m") and "unencrypted" in warning

"""The multi-page TIFF bomb (issue 16 item 1) against a real `uprez serve`: status, time, and the server's
peak RSS growth, plus the bytes one submission decodes (tracemalloc around the server's own `_prepare`).

    .venv/bin/python bench/tiff_bomb.py [--pages 300] [--side 1024]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.server.server_helpers import post_job  # noqa: E402


def bomb(pages: int, side: int) -> bytes:
    """`pages` zlib pages of side x side RGB zeros in one series (what tifffile.imread reads whole): about
    3.7 KB a page on disk, 3 MiB a page decoded."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((pages, side, side, 3), np.uint8), compression="zlib", photometric="rgb")
    return buffer.getvalue()


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def serve(config: Path) -> tuple[subprocess.Popen, str, str]:
    env = dict(os.environ, UPREZ_CONFIG_DIR=str(config))
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--device", "cpu",
                                "--max-upload-mb", "64"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (config / "engine.json").exists():
            url = json.loads((config / "engine.json").read_text())["url"]
            return process, url, (config / "token").read_text().strip()
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("uprez serve did not start")


def decoded_in_process(data: bytes) -> tuple[str, int]:
    """The server's `_prepare` on the bomb in this process: its outcome and tracemalloc's peak bytes."""
    from engine.server.app import _prepare
    from engine.server.config import ServerConfig

    tracemalloc.start()
    try:
        _prepare(ServerConfig(model="builtin"), json.dumps({"format": "tiff", "scale": 2}), data, None)
        outcome = "accepted"
    except Exception as exc:  # the refusal is what we expect after the fix
        outcome = f"{type(exc).__name__}: {exc}"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--side", type=int, default=1024)
    args = parser.parse_args()
    data = bomb(args.pages, args.side)
    declared = args.pages * args.side * args.side * 3
    print(f"bomb: {len(data)} bytes on disk, {args.pages} pages of {args.side}x{args.side} RGB, "
          f"{declared / 2**20:.0f} MiB declared")
    outcome, peak = decoded_in_process(data)
    print(f"in process: _prepare -> {outcome[:160]}; peak allocated {peak / 2**20:.1f} MiB")
    with tempfile.TemporaryDirectory() as folder:
        process, url, token = serve(Path(folder))
        try:
            time.sleep(1.0)  # let the warm-up settle
            before_rss, before_peak = status_kib(process.pid, "VmRSS"), status_kib(process.pid, "VmHWM")
            start = time.monotonic()
            status, _headers, body = post_job(url, token, {"format": "tiff", "scale": 2}, data)
            elapsed = time.monotonic() - start
            after_rss, after_peak = status_kib(process.pid, "VmRSS"), status_kib(process.pid, "VmHWM")
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"server: HTTP {status} after {elapsed:.2f} s: {json.loads(body).get('error', body[:100])}")
    print(f"server RSS: {before_rss / 1024:.0f} -> {after_rss / 1024:.0f} MiB; peak RSS growth "
          f"{(after_peak - before_peak) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

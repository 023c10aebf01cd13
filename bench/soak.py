"""Soak test: many small jobs through one real `uprez serve` process; prints its memory at start and end.

    python bench/soak.py [--jobs 200] [--size 32] [--model FOLDER]

Starts the server as a subprocess on an ephemeral loopback port (with a tiny random FLUX model unless
--model is given), drives it with the bridges' client, and reads the server's VmRSS from /proc (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def wait_for_engine(config_dir: Path, process: subprocess.Popen, timeout: float = 120.0) -> str:
    """The URL the server published in engine.json once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uprez serve exited with {process.returncode}")
        try:
            info = json.loads((config_dir / "engine.json").read_text())
            if info.get("pid") == process.pid:
                return info["url"]
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError("uprez serve did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--size", type=int, default=32, help="input side in pixels")
    parser.add_argument("--model", help="model folder (default: a tiny random FLUX model built now)")
    args = parser.parse_args()

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="uprez-soak-") as tmp:
        config_dir = Path(tmp) / "config"
        os.environ["UPREZ_CONFIG_DIR"] = str(config_dir)  # the client below finds URL and token here
        os.environ.pop("UPREZ_URL", None)
        model = args.model
        if model is None:
            from engine.testing.tiny_models import save_tiny_model

            model = str(save_tiny_model("flux-dev", Path(tmp) / "tiny-flux"))
        server = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--model", model,
                                   "--device", "cpu"], cwd=ROOT)
        try:
            wait_for_engine(config_dir, server)
            from plugin.uprez_client import Client

            client = Client()
            while not client.health()["model"]:  # the default model loads on the worker at start
                time.sleep(0.1)
            rows = [("start (model loaded)", 0, rss_mib(server.pid))]
            rng = np.random.default_rng(0)
            began = time.monotonic()
            for index in range(1, args.jobs + 1):
                pixels = rng.integers(0, 256, (args.size, args.size, 4), dtype=np.uint8).tobytes()
                job = client.submit_raw(pixels, args.size, args.size, "BGRA", 8, scale=2, strength=0.3, steps=8,
                                        seed=index)
                client.wait(job)
                data, meta = client.result(job)
                assert len(data) == meta["width"] * meta["height"] * 4
                client.cancel(job)  # forget it: the result is freed now rather than after the TTL
                if index in (1, 10, args.jobs // 4, args.jobs // 2, 3 * args.jobs // 4) and index < args.jobs:
                    rows.append((f"after {index} job{'s' if index > 1 else ''}", index, rss_mib(server.pid)))
            elapsed = time.monotonic() - began
            rows.append((f"end (after {args.jobs} jobs)", args.jobs, rss_mib(server.pid)))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    print(f"\n{args.jobs} jobs of {args.size}x{args.size} BGRA 8-bit, 2x, 8 steps at strength 0.3, tiny FLUX on "
          f"CPU: {elapsed:.1f} s ({args.jobs / elapsed:.1f} jobs/s)\n")
    print("| point | jobs done | server RSS (MiB) |")
    print("|---|---:|---:|")
    for label, jobs, rss in rows:
        print(f"| {label} | {jobs} | {rss:.1f} |")
    print(f"\nGrowth from the first job to the end: {rows[-1][2] - rows[1][2]:+.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Host side of the chroot run's cancel check: does what GIMP does when a user cancels a plug-in's progress.

Waits until the engine runs the job marked with seed 4242 (batch/check_upscale.py), SIGKILLs the plug-in
process that sent it (a descendant of the GIMP this runner started, never anything else), then waits for
the engine to report the job cancelled. Writes what it saw as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

MARKER_SEED = 4242
PLUGIN_FILE = "uprez-upscale.py"


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descends_from(pid: int, ancestor: int) -> bool:
    seen = 0
    while pid and pid != 1 and seen < 64:
        if pid == ancestor:
            return True
        pid, seen = parent_of(pid) or 0, seen + 1
    return False


def plug_in_processes(ancestor: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.decode(errors="replace").endswith(PLUGIN_FILE) for part in command) \
                and descends_from(int(entry.name), ancestor):
            found.append(int(entry.name))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--config", required=True, help="the engine's config folder (token)")
    parser.add_argument("--ancestor", type=int, required=True, help="pid of the process that started GIMP")
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugin"))
    from uprez_client import Client

    client = Client(args.url, token=(Path(args.config) / "token").read_text().strip())
    report: dict = {"ok": False}
    deadline = time.monotonic() + args.timeout
    job = None
    while job is None and time.monotonic() < deadline:
        if not alive(args.ancestor):
            report["error"] = "GIMP ended before the marked job ran"
            break
        job = next((j for j in client.jobs() if j["params"].get("seed") == MARKER_SEED and j["state"] == "running"),
                   None)
        time.sleep(0.05)
    if job is not None:
        victims = plug_in_processes(args.ancestor)
        report["killed"] = victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        state = client.job(job["id"])
        while state["state"] not in ("done", "failed", "cancelled") and time.monotonic() < killed_at + 120:
            time.sleep(0.05)
            state = client.job(job["id"])
        report.update(job=job["id"], state=state["state"], seconds_to_cancel=round(time.monotonic() - killed_at, 2),
                      ok=bool(victims) and state["state"] == "cancelled")
    elif "error" not in report:
        report["error"] = f"no running job with seed {MARKER_SEED} within {args.timeout:.0f} s"
    Path(args.out).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

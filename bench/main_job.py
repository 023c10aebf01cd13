"""The README's main job as a user runs it: `uprez upscale` of the bundled photo 2x with the built-in model.

    python bench/main_job.py [--runs 5] [--checkout DIR ...] [--env NAME=VALUE ...]

Each run is a whole process (`python -m engine.cli upscale engine/data/sample.jpg -o ... --scale 2`, as
scripts/demo.sh runs it, Python start-up and imports included); its user and system CPU seconds and peak RSS
come from the kernel (wait4's rusage), its wall time from the clock. Prints the median of `--runs` runs per
checkout as a markdown table. With several `--checkout`s (another tree of this repository, e.g. an older
commit's `git archive`), their runs are interleaved (A B A B ...) so a machine's changing load falls on all
alike. Every run of one checkout must write the same bytes; the table says whether checkouts agree.
`--floor` adds a row for `python -c "import torch"` run the same way: the start-up every job pays, whose
system share (page faults mapping torch's libraries) bounds what the whole job's sys / user can reach.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


FLOOR = "import torch"


def run_once(checkout: Path, env: dict[str, str], floor: bool = False) -> dict[str, float | str]:
    """One whole-process upscale in `checkout` (with this interpreter); its figures and output digest.
    `floor`: the process only imports torch (no output; digest "-")."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sample-2x.png"
        command = [sys.executable, "-m", "engine.cli", "upscale", "engine/data/sample.jpg", "-o", str(out),
                   "--scale", "2", "--overwrite"]
        if floor:
            command = [sys.executable, "-c", FLOOR]
        log = Path(tmp) / "stderr.txt"
        with log.open("wb") as stderr:  # a file, not a pipe: nobody reads while the child runs
            start = time.perf_counter()
            child = subprocess.Popen(command, cwd=checkout, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                     stderr=stderr)
            _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage, not the sum of all children's
            wall = time.perf_counter() - start
        child.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"main job failed in {checkout} (exit {code}): {log.read_text(errors='replace')[-400:]}")
        digest = "-" if floor else hashlib.sha256(out.read_bytes()).hexdigest()[:12]
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "sha256": digest}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checkout", action="append", type=Path,
                        help="a tree of this repository to run (repeatable; default: this one)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in every run's environment (e.g. UPREZ_MALLOC=system)")
    parser.add_argument("--floor", action="store_true", help=f"also time `python -c '{FLOOR}'`, interleaved")
    args = parser.parse_args(argv)
    checkouts = [c.resolve() for c in args.checkout or [ROOT]]
    env = dict(item.split("=", 1) for item in args.env)
    rows: list[tuple[Path | str, Path, bool]] = [(c, c, False) for c in checkouts]
    if args.floor:
        rows.append((f"`python -c '{FLOOR}'` alone", checkouts[0], True))
    runs: dict[Path | str, list[dict[str, float | str]]] = {label: [] for label, _, _ in rows}
    for n in range(args.runs):
        for label, checkout, floor in rows:  # interleaved: A B A B ...
            r = run_once(checkout, env, floor)
            runs[label].append(r)
            print(f"run {n + 1} {label}: wall {r['wall_s']:.2f} s, user {r['user_s']:.2f} s, sys {r['sys_s']:.2f} s,"
                  f" peak {r['peak_rss_mib']:.0f} MiB, {r['sha256']}", file=sys.stderr)
    print(f"Main job (built-in model, sample.jpg 600x512 -> 1200x1024), median of {args.runs} whole-process runs"
          f"{'; env ' + ' '.join(args.env) if args.env else ''}; {os.cpu_count()} CPUs.\n")
    print("| checkout | wall s | user s | sys s | sys / user | peak RSS MiB | output sha256 |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for checkout, rs in runs.items():
        median = {k: statistics.median(float(r[k]) for r in rs) for k in ("wall_s", "user_s", "sys_s", "peak_rss_mib")}
        digests = sorted({str(r["sha256"]) for r in rs})
        print(f"| {checkout} | {median['wall_s']:.2f} | {median['user_s']:.2f} | {median['sys_s']:.2f} | "
              f"{median['sys_s'] / median['user_s']:.0%} | {median['peak_rss_mib']:.0f} | {', '.join(digests)} |")


if __name__ == "__main__":
    main()

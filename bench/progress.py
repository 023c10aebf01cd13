"""How progress moves on a big photo: events, the longest silence between them, and how fast a cancel stops.

A 3000x2250 JPEG made from the bundled sample (or `--image`), 2x with the built-in model, through
`engine.upscale` as the CLI calls it. Two runs: one to the end (event count, the longest gap between events
in seconds and in fraction, counting the job's start and end, the fraction and ETA error at about 25 %), one
cancelled `--cancel-at` seconds in (the time from `cancel()` to `Cancelled`). Prints figures; not a test.

    python bench/progress.py [--size 3000x2250] [--cancel-at 30] [--skip-full]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from engine import CancelToken, upscale  # noqa: E402
from engine.imagefile import read_image  # noqa: E402
from engine.progress import Cancelled, ProgressEvent  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "data" / "sample.jpg"


def make_photo(size: tuple[int, int], folder: Path, source: Path) -> Path:
    """The test photo: `source` resized to `size` and saved as a quality-92 JPEG, as a camera would."""
    path = folder / f"photo-{size[0]}x{size[1]}.jpg"
    with Image.open(source) as image:
        image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(path, quality=92)
    return path


def run(path: Path, cancel_at: float | None) -> dict:
    pixels = read_image(path)
    times: list[float] = []
    events: list[ProgressEvent] = []
    token = CancelToken()
    cancelled_at: list[float] = []

    def on_progress(event: ProgressEvent) -> None:
        times.append(time.monotonic())
        events.append(event)

    def cancel_later() -> None:
        if not done.wait(cancel_at):
            cancelled_at.append(time.monotonic())
            token.cancel()

    done = threading.Event()
    start = time.monotonic()
    if cancel_at is not None:
        threading.Thread(target=cancel_later, daemon=True).start()
    outcome = "done"
    try:
        upscale(pixels, on_progress=on_progress, cancel=token, scale=2)
    except Cancelled:
        outcome = "cancelled"
    end = time.monotonic()
    done.set()
    marks = [start, *times, end]
    fractions = [0.0, *(e.fraction for e in events), 1.0 if outcome == "done" else events[-1].fraction if events else 0]
    figures = {
        "outcome": outcome, "wall_s": round(end - start, 1), "events": len(events),
        "longest_gap_s": round(max(b - a for a, b in pairwise(marks)), 1),
        "longest_gap_fraction": round(max(b - a for a, b in pairwise(fractions)), 3),
    }
    if cancelled_at:
        figures["cancel_to_stop_s"] = round(end - cancelled_at[0], 2)
    quarter = next((i for i, e in enumerate(events) if e.fraction >= 0.25), None)
    if outcome == "done" and quarter is not None:
        elapsed = times[quarter] - start
        fraction = events[quarter].fraction
        figures["eta_at_quarter"] = {"fraction": round(fraction, 3),
                                     "eta_s": round(elapsed * (1 - fraction) / fraction, 1),
                                     "real_remaining_s": round(end - times[quarter], 1)}
    phases = [getattr(e, "phase", "") for e in events]
    gaps = [b - a for a, b in pairwise(marks)]
    widest = gaps.index(max(gaps))  # between marks[widest] and marks[widest + 1]
    figures["longest_gap_between"] = (["start", *phases][widest], [*phases, "end"][widest])
    figures["phases_sample"] = [p for p in phases[:: max(1, len(phases) // 8)]][:10]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="3000x2250")
    parser.add_argument("--image", type=Path, default=SAMPLE)
    parser.add_argument("--cancel-at", type=float, default=30.0)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        photo = make_photo(size, Path(folder), args.image)
        if not args.skip_full:
            print("full run:", run(photo, None), flush=True)
        print(f"cancelled at {args.cancel_at:g} s:", run(photo, args.cancel_at), flush=True)


if __name__ == "__main__":
    main()

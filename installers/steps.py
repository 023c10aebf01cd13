"""An install is a list of steps, planned first (reading only) and then printed, or printed and done."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, TextIO


class InstallError(Exception):
    """Something the user has to fix; the message says what."""


@dataclass(frozen=True)
class Step:
    """One line of the plan; `action` None means a note (something found, or skipped and why)."""

    text: str
    action: Callable[[], None] | None = None


def execute(steps: list[Step], dry_run: bool, out: TextIO | None = None) -> None:
    """Print every step; run it unless this is a dry run."""
    out = out or sys.stdout
    for step in steps:
        if step.action is None:
            print(f"  note: {step.text}", file=out)
            continue
        print(f"  {'would ' if dry_run else ''}{step.text}", file=out, flush=True)
        if not dry_run:
            step.action()

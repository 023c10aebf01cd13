"""Says at the end of a run which Krita versions the bridge ran in (and how long each scenario took there)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kritas  # noqa: E402


def pytest_terminal_summary(terminalreporter) -> None:
    for version, line in sorted(kritas.SEEN.items()):
        times = kritas.TIMES.get(version)
        terminalreporter.write_line(f"ran in {kritas.LABELS[version]}: {line}" + (f"; {times}" if times else ""))

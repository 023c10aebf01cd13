"""Writing a file so that a reader sees the old text or the new, never half of it."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) beside `path`, then swap it in: Krita or the engine reading a half-written kritarc,
    settings file or install record would lose what it held. The folder must exist."""
    temp = path.with_name(path.name + ".uprez-tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(str(temp), str(path))

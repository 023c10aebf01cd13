"""Read and set one key of Krita's kritarc (a KConfig INI file) without touching any other line.

configparser would rewrite the whole file (case, spacing, KConfig's `[$i]` markers), so edits are line-based.
"""

from __future__ import annotations

from pathlib import Path

from .files import write_text_atomic


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _find(lines: list[str], section: str, key: str) -> tuple[int | None, int | None]:
    """(index of the section's last line, index of the key's line), each None when absent."""
    current, end, found = None, None, None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped == f"[{section}]"
            if current:
                end = index
            continue
        if current:
            if stripped:
                end = index
            name = stripped.split("=", 1)[0].strip()
            if "=" in stripped and name == key:
                found = index
    return end, found


def get(path: Path, section: str, key: str) -> str | None:
    """The key's value, or None when the file, section or key is missing."""
    lines = _lines(path)
    _, found = _find(lines, section, key)
    return None if found is None else lines[found].split("=", 1)[1].strip()


def set_value(path: Path, section: str, key: str, value: str | None) -> None:
    """Set `key=value` in `[section]` (value None removes the key), keeping every other line as it was."""
    lines = _lines(path)
    end, found = _find(lines, section, key)
    if value is None:
        if found is None:
            return
        del lines[found]
        _drop_if_empty(lines, section)
    elif found is not None:
        lines[found] = f"{key}={value}"
    elif end is not None:
        lines.insert(end + 1, f"{key}={value}")
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", f"{key}={value}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines) + "\n")


def _drop_if_empty(lines: list[str], section: str) -> None:
    """Remove `[section]` when no key is left in it, with the blank line set_value put before it."""
    header = next((i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None)
    if header is None:
        return
    after = header + 1
    while after < len(lines) and not lines[after].strip():
        after += 1
    if after < len(lines) and not lines[after].strip().startswith("["):
        return  # keys remain
    del lines[header:after if after < len(lines) else header + 1]
    if header > 0 and not lines[header - 1].strip() and (header == len(lines) or lines[header].strip()):
        del lines[header - 1]

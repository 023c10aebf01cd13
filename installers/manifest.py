"""The record of what the installer put where, so that `--uninstall` removes exactly that and nothing else."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import kritarc
from .files import write_text_atomic

FILE_NAME = "install-manifest.json"


class Manifest:
    """Paths we placed, folders we created, kritarc keys we set (with the value they had before us)."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.path = path
        self.paths: list[str] = list(data.get("paths", []))
        self.created_dirs: list[str] = list(data.get("created_dirs", []))
        self.kritarc: list[dict[str, Any]] = list(data.get("kritarc", []))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as exc:
            raise ValueError(f"the install record {path} is unreadable ({exc}); fix or delete it and re-run") from exc
        return cls(path, data)

    def is_empty(self) -> bool:
        return not (self.paths or self.created_dirs or self.kritarc)

    def add_path(self, path: Path) -> None:
        if str(path) not in self.paths:
            self.paths.append(str(path))

    def make_dirs(self, folder: Path) -> None:
        """mkdir -p, recording each folder that did not exist so uninstall can remove it if left empty."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            path.mkdir()
            if str(path) not in self.created_dirs:
                self.created_dirs.append(str(path))

    def set_kritarc(self, path: Path, section: str, key: str, value: str) -> None:
        """Set the key, remembering its value from before the *first* install so re-runs keep the original."""
        if not any(e["path"] == str(path) and e["key"] == key for e in self.kritarc):
            self.kritarc.append({"path": str(path), "section": section, "key": key,
                                 "previous": kritarc.get(path, section, key), "existed": path.exists()})
        kritarc.set_value(path, section, key, value)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps({"version": 1, "paths": self.paths, "created_dirs": self.created_dirs,
                                                 "kritarc": self.kritarc}, indent=1))

    def restore_kritarc(self, entry: dict[str, Any]) -> None:
        """Put one kritarc key back as it was before the first install (removed if it did not exist)."""
        path = Path(entry["path"])
        if not path.exists():
            return
        kritarc.set_value(path, entry["section"], entry["key"], entry["previous"])
        if not entry.get("existed", True) and _only_headers(path):
            path.unlink()  # we created this kritarc and nothing else was ever written to it


def _only_headers(path: Path) -> bool:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return all(not line or line.startswith("[") for line in lines)


def remove_path(path: Path) -> None:
    """Remove a file or folder we placed; a link is removed itself, never what it points to."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, onerror=_retry_writable)


def _retry_writable(func, path, _exc_info) -> None:
    """Windows refuses to delete read-only files (pip marks some so); make them writable and try again."""
    os.chmod(path, 0o700)
    func(path)

"""The editor bridges as they are shipped: each one's folder with its own copy of the client inside."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from .locations import GIMP_PLUGIN, KRITA_PLUGIN

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".ruff_cache")


class MissingBridge(Exception):
    """A bridge's files are not in this checkout."""


@dataclass(frozen=True)
class Sources:
    """Where a checkout keeps the bridges (plugin/krita, plugin/gimp) and the client they carry."""

    root: Path  # the checkout's plugin/ folder

    @property
    def client(self) -> Path:
        return self.root / "uprez_client"

    @property
    def krita_package(self) -> Path:
        return self.root / "krita" / KRITA_PLUGIN

    @property
    def krita_desktop(self) -> Path:
        return self.root / "krita" / f"{KRITA_PLUGIN}.desktop"

    @property
    def krita_action(self) -> Path:
        """Optional: Krita reads menu placement and shortcuts of the plug-in's actions from an .action file."""
        return self.root / "krita" / f"{KRITA_PLUGIN}.action"

    @property
    def gimp_folder(self) -> Path:
        return self.root / "gimp" / GIMP_PLUGIN

    def check_krita(self) -> None:
        for path in (self.client / "__init__.py", self.krita_package / "__init__.py", self.krita_desktop):
            if not path.is_file():
                raise MissingBridge(f"the Krita bridge is incomplete in this checkout: {path} is missing "
                                    "(pass --no-krita to install without it)")

    def check_gimp(self) -> None:
        for path in (self.client / "__init__.py", self.gimp_folder / f"{GIMP_PLUGIN}.py"):
            if not path.is_file():
                raise MissingBridge(f"the GIMP plug-in is incomplete in this checkout: {path} is missing "
                                    "(pass --no-gimp to install without it)")


def stage_folder(package: Path, client: Path, staging: Path) -> Path:
    """`package` copied to `staging` with the client copied inside it, caches left out."""
    shutil.copytree(package, staging, ignore=IGNORED)
    inner = staging / client.name
    if inner.exists():  # a checkout may carry a stale copy; the client beside it is the current one
        shutil.rmtree(inner)
    shutil.copytree(client, inner, ignore=IGNORED)
    return staging


def replace_folder(staged: Path, target: Path) -> None:
    """Swap `staged` in for `target`, so an upgrade leaves no file of the previous version behind."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    try:
        staged.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)  # the previous version stays usable rather than hidden as .name.old
        raise
    if old is not None:
        shutil.rmtree(old)


def copy_file(source: Path, target: Path) -> None:
    temp = target.with_name(f".{target.name}.new")
    shutil.copyfile(source, temp)
    os.replace(temp, target)


def make_executable(path: Path) -> None:
    """GIMP 3 only runs a plug-in whose file has its execute bit (ignored on Windows, which has none)."""
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

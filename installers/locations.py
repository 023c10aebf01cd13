"""Where Uprez, Krita and GIMP keep their files on each system: pure functions of a `Host`.

The system, home folder and environment are injected, so every platform's layout is tested on Linux.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from plugin.uprez_client import protocol

APP = "uprez"
KRITA_PLUGIN = "uprez_krita"  # the Python module name, the .desktop file's X-KDE-Library
GIMP_PLUGIN = "uprez-upscale"  # GIMP 3 wants the executable named as its folder
GIMP_VERSIONS = ("3.0", "3.2")


@dataclass(frozen=True)
class Host:
    """The machine the installer works on: `system` is sys.platform's "linux", "darwin" or "win32"."""

    system: str
    home: Path
    environ: Mapping[str, str] = field(default_factory=dict)
    machine: str = ""  # platform.machine(): "arm64" on Apple silicon

    @classmethod
    def current(cls) -> Host:
        system = "win32" if sys.platform == "win32" else "darwin" if sys.platform == "darwin" else "linux"
        return cls(system, Path(os.path.expanduser("~")), dict(os.environ), platform.machine())

    def env_path(self, name: str, default: Path) -> Path:
        """An environment variable naming a folder, or `default` when it is unset or blank."""
        value = self.environ.get(name, "").strip()
        return Path(value) if value else default

    @property
    def xdg_data(self) -> Path:
        return self.env_path("XDG_DATA_HOME", self.home / ".local" / "share")

    @property
    def xdg_config(self) -> Path:
        return self.env_path("XDG_CONFIG_HOME", self.home / ".config")

    @property
    def appdata(self) -> Path:
        return self.env_path("APPDATA", self.home / "AppData" / "Roaming")

    @property
    def local_appdata(self) -> Path:
        return self.env_path("LOCALAPPDATA", self.home / "AppData" / "Local")

    @property
    def mac_support(self) -> Path:
        return self.home / "Library" / "Application Support"


def data_dir(host: Host) -> Path:
    """platformdirs' user_data_dir("uprez", appauthor=False): where the engine's venv and the manifest live."""
    override = host.environ.get("UPREZ_DATA_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    if host.system == "win32":
        return host.local_appdata / APP
    if host.system == "darwin":
        return host.mac_support / APP
    return host.xdg_data / APP


def config_dir(host: Host) -> Path:
    """The engine's config folder (token, engine.json): the bridges' client's rule, for this host."""
    return Path(protocol.config_dir(host.system, host.environ, str(host.home)))


def venv_python(venv: Path, host: Host) -> Path:
    return venv / "Scripts" / "python.exe" if host.system == "win32" else venv / "bin" / "python"


def venv_script(venv: Path, name: str, host: Host) -> Path:
    return venv / "Scripts" / f"{name}.exe" if host.system == "win32" else venv / "bin" / name


# -- Krita -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KritaTarget:
    """One Krita installation's user folders: its resource folder (holding pykrita/) and its kritarc."""

    label: str
    resources: Path
    kritarc: Path

    @property
    def pykrita(self) -> Path:
        return self.resources / "pykrita"

    def found(self) -> bool:
        """Krita creates both on its first start; either one means this Krita has run here."""
        return self.resources.is_dir() or self.kritarc.is_file()


def _krita_candidates(host: Host) -> list[KritaTarget]:
    if host.system == "win32":
        return [KritaTarget("Krita", host.appdata / "krita", host.local_appdata / "kritarc")]
    if host.system == "darwin":
        return [KritaTarget("Krita", host.mac_support / "krita", host.home / "Library" / "Preferences" / "kritarc")]
    flatpak = host.home / ".var" / "app" / "org.kde.krita"
    snap = host.home / "snap" / "krita" / "current"
    return [
        KritaTarget("Krita", host.xdg_data / "krita", host.xdg_config / "kritarc"),  # packages and the AppImage
        KritaTarget("Krita (Flatpak)", flatpak / "data" / "krita", flatpak / "config" / "kritarc"),
        KritaTarget("Krita (Snap)", snap / ".local" / "share" / "krita", snap / ".config" / "kritarc"),
    ]


_RESOURCE_DIR = re.compile(r"^\s*ResourceDirectory\s*=\s*(.+?)\s*$")


def custom_resource_dir(kritarc: Path) -> Path | None:
    """The resource folder chosen in Krita's settings (kritarc `ResourceDirectory=`), if any."""
    try:
        text = kritarc.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip()
            continue
        match = _RESOURCE_DIR.match(line)
        if match and section in ("", "[General]"):
            return Path(match.group(1)).expanduser()
    return None


def krita_targets(host: Host) -> list[KritaTarget]:
    """Every Krita (5 and 6 share these folders) that has run on this machine, with its chosen resource folder."""
    found = []
    for target in _krita_candidates(host):
        if not target.found():
            continue
        custom = custom_resource_dir(target.kritarc)
        if custom is not None and custom != target.resources:
            target = KritaTarget(f"{target.label}, resource folder {custom}", custom, target.kritarc)
        found.append(target)
    return found


def default_krita_target(host: Host) -> KritaTarget:
    return _krita_candidates(host)[0]


# -- GIMP ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GimpTarget:
    """One GIMP 3.x profile folder; plug-ins go to its `plug-ins/` subfolder."""

    label: str
    profile: Path

    @property
    def plug_ins(self) -> Path:
        return self.profile / "plug-ins"


def _gimp_roots(host: Host) -> list[tuple]:
    if host.system == "win32":
        return [("GIMP", host.appdata / "GIMP")]
    if host.system == "darwin":
        return [("GIMP", host.mac_support / "GIMP")]
    return [
        ("GIMP", host.xdg_config / "GIMP"),
        ("GIMP (Flatpak)", host.home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP"),
        ("GIMP (Snap)", host.home / "snap" / "gimp" / "current" / ".config" / "GIMP"),
    ]


def gimp_targets(host: Host) -> list[GimpTarget]:
    """Every GIMP 3 profile that exists. A missing one is never created: GIMP only migrates the previous
    version's settings into a profile folder that does not exist yet."""
    found = []
    for label, root in _gimp_roots(host):
        versions = set(GIMP_VERSIONS)
        if root.is_dir():
            versions.update(p.name for p in root.iterdir() if re.fullmatch(r"3\.\d+", p.name) and p.is_dir())
        for version in sorted(versions, key=lambda v: tuple(int(x) for x in v.split("."))):
            if (root / version).is_dir():
                found.append(GimpTarget(f"{label} {version}", root / version))
    return found

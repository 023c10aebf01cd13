"""Fake homes laid out as each system's Krita and GIMP lay them out, and a snapshot of a folder tree."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `installers` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from installers.locations import Host  # noqa: E402

PLUGIN = ROOT / "plugin"
KRITARC = "[General]\nShowCanvasMessages=false\n\n[python]\nenable_scripter=true\n\n[MainWindow]\nState=AAAA\n"


@dataclass(frozen=True)
class Layout:
    """Where one system keeps things, relative to the fake home; None = that system has no such folder."""

    system: str
    env: dict  # environment variables, values relative to home
    krita: str  # resource folder
    kritarc: str
    gimp: str  # folder holding the 3.0/, 3.2/ profiles
    config: str
    data: str
    machine: str = "x86_64"


LAYOUTS = {
    "linux": Layout("linux", {}, ".local/share/krita", ".config/kritarc", ".config/GIMP", ".config/uprez",
                    ".local/share/uprez"),
    "linux-xdg": Layout("linux", {"XDG_DATA_HOME": "xdata", "XDG_CONFIG_HOME": "xconfig"}, "xdata/krita",
                        "xconfig/kritarc", "xconfig/GIMP", "xconfig/uprez", "xdata/uprez"),
    "flatpak": Layout("linux", {}, ".var/app/org.kde.krita/data/krita", ".var/app/org.kde.krita/config/kritarc",
                      ".var/app/org.gimp.GIMP/config/GIMP", ".config/uprez", ".local/share/uprez"),
    "snap": Layout("linux", {}, "snap/krita/current/.local/share/krita", "snap/krita/current/.config/kritarc",
                   "snap/gimp/current/.config/GIMP", ".config/uprez", ".local/share/uprez"),
    "windows": Layout("win32", {"APPDATA": "AppData/Roaming", "LOCALAPPDATA": "AppData/Local"},
                      "AppData/Roaming/krita", "AppData/Local/kritarc", "AppData/Roaming/GIMP",
                      "AppData/Roaming/uprez", "AppData/Local/uprez"),
    "macos": Layout("darwin", {}, "Library/Application Support/krita", "Library/Preferences/kritarc",
                    "Library/Application Support/GIMP", "Library/Application Support/uprez",
                    "Library/Application Support/uprez", machine="arm64"),
}


@dataclass(frozen=True)
class FakeHome:
    host: Host
    home: Path
    layout: Layout

    def path(self, relative: str) -> Path:
        return self.home / relative

    @property
    def pykrita(self) -> Path:
        return self.path(self.layout.krita) / "pykrita"

    @property
    def kritarc(self) -> Path:
        return self.path(self.layout.kritarc)

    def gimp_plug_ins(self, version: str) -> Path:
        return self.path(self.layout.gimp) / version / "plug-ins"

    @property
    def config(self) -> Path:
        return self.path(self.layout.config)

    @property
    def data(self) -> Path:
        return self.path(self.layout.data)


def make_home(tmp_path: Path, name: str, krita: bool = True, gimp: tuple = ("3.0", "3.2")) -> FakeHome:
    """A home where Krita and the given GIMP versions have run once (their folders and settings exist)."""
    layout = LAYOUTS[name]
    home = tmp_path / "home"
    home.mkdir()
    env = {key: str(home / value) for key, value in layout.env.items()}
    env["PATH"] = str(tmp_path / "empty-path")  # no `uprez` of this machine's on it
    fake = FakeHome(Host(layout.system, home, env, layout.machine), home, layout)
    if krita:
        (fake.path(layout.krita) / "brushes").mkdir(parents=True)  # Krita's own resources, never touched
        fake.kritarc.parent.mkdir(parents=True, exist_ok=True)
        fake.kritarc.write_text(KRITARC)
    for version in gimp:
        profile = fake.path(layout.gimp) / version
        profile.mkdir(parents=True)
        (profile / "gimprc").write_text("(theme \"Dark\")\n")
    return fake


def snapshot(root: Path) -> dict:
    """Every file and folder under `root`: relative path -> (kind, bytes, execute bit)."""
    tree = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[relative] = ("link", str(path.readlink()), False)
        elif path.is_dir():
            tree[relative] = ("dir", b"", False)
        else:
            tree[relative] = ("file", path.read_bytes(), bool(path.stat().st_mode & 0o100))
    return tree

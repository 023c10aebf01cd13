"""The zip that Krita's Tools > Scripts > Import Python Plugin from File... accepts.

Krita's importer (pykrita/plugin_importer/plugin_importer.py, Krita 5.1+) reads the module name from a
`.desktop` file's `X-KDE-Library`, then looks for a *directory entry* `<name>/` holding `<name>/__init__.py`
and an optional `<name>.action`. Zips made by "compress folder" tools often lack directory entries, and the
importer then finds no plug-in: this builder writes them explicitly.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from .bridges import Sources, stage_folder
from .locations import KRITA_PLUGIN

# Fixed timestamps make the same sources give the same bytes (reproducible release artefacts).
EPOCH = (2020, 1, 1, 0, 0, 0)


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, EPOCH)
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build(sources: Sources, out: Path) -> list[str]:
    """Write the zip to `out` (replacing it); returns its entry names."""
    sources.check_krita()
    names: list[str] = []
    with tempfile.TemporaryDirectory(prefix="uprez-krita-zip-") as temp:
        staged = stage_folder(sources.krita_package, sources.client, Path(temp) / KRITA_PLUGIN)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")
        with zipfile.ZipFile(partial, "w") as archive:
            files = [(sources.krita_desktop, f"{KRITA_PLUGIN}.desktop")]
            if sources.krita_action.is_file():
                files.append((sources.krita_action, f"{KRITA_PLUGIN}.action"))
            folders = [staged, *sorted(p for p in staged.rglob("*") if p.is_dir())]
            for folder in folders:
                name = folder.relative_to(staged.parent).as_posix() + "/"
                archive.writestr(_entry(name, 0o40755), b"")
                names.append(name)
            files += [(p, p.relative_to(staged.parent).as_posix()) for p in sorted(staged.rglob("*")) if p.is_file()]
            for path, name in files:
                archive.writestr(_entry(name, 0o100644), path.read_bytes())
                names.append(name)
        partial.replace(out)
    return names

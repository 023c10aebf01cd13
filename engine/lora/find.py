"""The LoRAs on this machine, for the model manager and the server's model list: ComfyUI's `models/loras` (and its
sub-folders, as ComfyUI lists them), Uprez's own `<config>/loras`, and $UPREZ_LORA_DIRS; each with the families
it fits, read from its header only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UprezError
from engine.lora.files import LORA_SUFFIXES, read_lora

ENV_LORA_DIRS = "UPREZ_LORA_DIRS"


@dataclass(frozen=True)
class LocalLora:
    path: Path
    name: str  # relative to its folder, as ComfyUI names it (sub/folder/file.safetensors)
    families: tuple[str, ...]
    size: int
    where: str  # "comfyui" or "uprez"

    def as_json(self) -> dict:
        return {"path": str(self.path), "name": self.name, "families": list(self.families), "size": self.size,
                "where": self.where}


def lora_dirs(config_dir: Path, environ: Mapping[str, str] | None = None) -> list[tuple[Path, str]]:
    """(folder, where) to look in: $UPREZ_LORA_DIRS, each ComfyUI's models/loras, and <config>/loras."""
    from engine.models.store import comfyui_models_folder, comfyui_roots

    environ = os.environ if environ is None else environ
    found = [(Path(p).expanduser(), "uprez") for p in environ.get(ENV_LORA_DIRS, "").split(os.pathsep) if p.strip()]
    try:
        roots = comfyui_roots(config_dir, environ)
    except UprezError:
        roots = []  # a broken models.json is reported by the model list itself; LoRAs of the other places still show
    found += [(comfyui_models_folder(root) / "loras", "comfyui") for root in roots]
    found.append((config_dir / "loras", "uprez"))
    return found


def find_loras(config_dir: Path, environ: Mapping[str, str] | None = None) -> list[LocalLora]:
    """Every LoRA file in the LoRA folders, each once, sorted by name; unreadable or non-LoRA files are left out."""
    seen: set[Path] = set()
    loras = []
    for folder, where in lora_dirs(config_dir, environ):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix not in LORA_SUFFIXES or not path.is_file() or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                lora = read_lora(path)
            except UprezError:
                continue
            loras.append(LocalLora(path, str(path.relative_to(folder)), lora.families, path.stat().st_size, where))
    return sorted(loras, key=lambda lora: lora.name.lower())


def resolve_lora(text: str, config_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """A job's `PATH[:WEIGHT]` with PATH made absolute: a file as given, else a LoRA of that name (with or
    without .safetensors, or its file name alone) in the LoRA folders; refuses, in one line, one found nowhere."""
    from engine.lora.spec import parse_lora

    spec = parse_lora(text)
    path = Path(spec.path).expanduser()
    if not path.exists() and not path.is_absolute():
        wanted = spec.path if spec.path.endswith(LORA_SUFFIXES) else spec.path + LORA_SUFFIXES[0]
        found = [lora for lora in find_loras(config_dir, environ) if wanted in (lora.name, lora.path.name)]
        if not found:
            from engine.errors import InvalidInput

            raise InvalidInput(f"LoRA {spec.path!r} was not found: not a file, nor a LoRA of that name in "
                                f"{', '.join(str(folder) for folder, _ in lora_dirs(config_dir, environ))}")
        path = found[0].path
    return f"{path.resolve()}:{spec.weight:g}"

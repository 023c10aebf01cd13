"""Where SR models live on this machine, what each one is, and turning a `--upsampler` NAME into a file."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput, ModelNotFound
from engine.sr.load import SR_SUFFIXES, is_sr_checkpoint

ENV_SR_DIRS = "UPREZ_SR_DIRS"  # extra folders of SR models, os.pathsep-separated
OWN_FOLDER = "upscale_models"  # <config>/upscale_models: where `uprez models pull` puts SR models
LANCZOS = "lanczos"


@dataclass(frozen=True)
class SRFile:
    """An SR checkpoint found on disk; `architecture` and `scale` are filled by `describe`."""

    path: Path
    where: str  # comfyui, chainner, uprez or folder
    size: int
    architecture: str | None = None
    scale: int | None = None
    error: str | None = None  # why it would not load, when it would not

    @property
    def name(self) -> str:
        return self.path.stem


def sr_folders(config_dir: Path, environ: Mapping[str, str] | None = None) -> list[tuple[Path, str]]:
    """(folder, where): $UPREZ_SR_DIRS, ComfyUI's models/upscale_models, chaiNNer's, then Uprez's own.

    chaiNNer opens models from anywhere; `~/chaiNNer/models` and `~/Documents/chaiNNer/models` are where its
    users commonly keep them, and any other folder goes in UPREZ_SR_DIRS."""
    from engine.models import store as model_store

    environ = os.environ if environ is None else environ
    folders = [(Path(p).expanduser(), "folder") for p in environ.get(ENV_SR_DIRS, "").split(os.pathsep) if p.strip()]
    try:
        roots = model_store.comfyui_roots(config_dir, environ)
    except InvalidInput:  # a broken models.json must not hide the other folders
        roots = []
    folders += [(model_store.comfyui_models_folder(root) / "upscale_models", "comfyui") for root in roots]
    home = Path(os.path.expanduser("~"))
    folders += [(home / "chaiNNer" / "models", "chainner"), (home / "Documents" / "chaiNNer" / "models", "chainner")]
    folders.append((config_dir / OWN_FOLDER, "uprez"))
    unique: list[tuple[Path, str]] = []
    for folder, where in folders:
        if folder not in [f for f, _ in unique]:
            unique.append((folder, where))
    return unique


def scan_sr(folders: Iterable[tuple[Path, str]]) -> list[SRFile]:
    """SR checkpoints directly inside each folder (flow-model .safetensors files are left out), each once."""
    found: dict[Path, SRFile] = {}
    for folder, where in folders:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.suffix.lower() in SR_SUFFIXES and is_sr_checkpoint(entry):
                    found.setdefault(entry.resolve(), SRFile(entry.resolve(), where, entry.stat().st_size))
            except OSError:
                continue
    return list(found.values())


def describe(model: SRFile) -> SRFile:
    """The file with spandrel's architecture and scale read from its state dict (on the CPU), or its error."""
    from dataclasses import replace

    from engine.sr.load import read_descriptor

    try:
        descriptor = read_descriptor(model.path)
    except ModelNotFound as exc:
        return replace(model, error=str(exc))
    return replace(model, architecture=descriptor.architecture.name, scale=int(descriptor.scale))


def resolve_upsampler(name: str | None, config_dir: Path | None = None) -> Path | None:
    """None for Lanczos; else the SR file that `name` means: a path, or the file name (with or without its
    suffix) of a model in the SR folders."""
    if name is None or name.strip().lower() in ("", LANCZOS):
        return None
    path = Path(name).expanduser()
    if path.is_file():
        if not is_sr_checkpoint(path):
            raise InvalidInput(f"upsampler {name!r} is not an SR model (.pth, .pt, .ckpt or an SR .safetensors)")
        return path.resolve()
    if os.sep in name or (os.altsep and os.altsep in name):
        raise InvalidInput(f"upsampler {name!r} does not exist")
    if config_dir is None:
        from engine.server.config import uprez_config_dir

        config_dir = uprez_config_dir()
    wanted = name.lower()
    for model in scan_sr(sr_folders(config_dir)):
        if wanted in (model.path.name.lower(), model.name.lower()):
            return model.path
    raise InvalidInput(f"upsampler {name!r} was not found; use lanczos, a path to an SR model, or a name from "
                       "`uprez models list` (SR models are searched in ComfyUI's models/upscale_models, "
                       f"{ENV_SR_DIRS} and <config>/{OWN_FOLDER})")


def sr_model_path(model: str) -> Path | None:
    """The SR file `--model` names (a path, or a name in the SR folders), or None for a flow model."""
    from engine.settings import BUILTIN_MODEL

    path = Path(model).expanduser()
    if path.exists():
        return path if is_sr_checkpoint(path) else None
    if model == BUILTIN_MODEL or "/" in model or "\\" in model:
        return None  # the built-in model, a repo id or a missing path: the flow loader's to explain
    try:
        return resolve_upsampler(model)
    except InvalidInput:
        return None

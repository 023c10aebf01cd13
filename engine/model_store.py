"""Models already on this machine: the Hugging Face cache, ComfyUI's models/ folders, and Uprez's own folders.

Everything here reads the disk only (no network, no torch), so the server can list models and a pull can
tell that a model is already here before it thinks of downloading it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidInput, UprezError
from engine.memory import format_bytes

SETTINGS_FILE = "models.json"  # in the config folder: {"comfyui": [...], "model_dirs": [...]}
ENV_COMFYUI = "UPREZ_COMFYUI_DIRS"
# ComfyUI's subfolders that can hold what the loader takes: diffusers folders, transformer-only or
# all-in-one .safetensors checkpoints.
COMFYUI_SUBFOLDERS = ("diffusers", "diffusion_models", "unet", "checkpoints")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class LocalModel:
    """One usable model on disk. `id` is what a job names: the repo id for the HF cache, else the path."""

    id: str
    name: str
    kind: str  # "diffusers" or "safetensors"
    where: str  # "hf-cache", "comfyui", "folder"
    path: Path
    size: int  # bytes on disk
    complete: bool = True  # False: an interrupted download (`uprez models pull` resumes it)
    family: str | None = None
    missing: tuple[str, ...] = field(default=())

    @property
    def removable(self) -> bool:
        """Only the HF cache is ours to clean; ComfyUI's and the user's own folders are theirs."""
        return self.where == "hf-cache"


# -- the Hugging Face cache ------------------------------------------------------------------------------------
def hf_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """huggingface_hub's cache folder, computed from the environment now (its constants froze at import time)."""
    environ = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if environ.get(name, "").strip():
            return Path(environ[name]).expanduser()
    if environ.get("HF_HOME", "").strip():
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    cache = environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "huggingface" / "hub"


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _snapshot(folder: Path) -> Path | None:
    """The snapshot `main` points at, else the newest one."""
    try:
        commit = (folder / "refs" / "main").read_text().strip()
        if commit and (folder / "snapshots" / commit).is_dir():
            return folder / "snapshots" / commit
    except OSError:
        pass
    snapshots = [p for p in (folder / "snapshots").glob("*") if p.is_dir()]
    return max(snapshots, key=lambda p: p.stat().st_mtime) if snapshots else None


def _missing_components(folder: Path) -> tuple[str, ...]:
    """Components model_index.json names whose folder has no weights (an interrupted download)."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return ("model_index.json",)
    missing = []
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        part = folder / name
        if not part.is_dir() or not any(p.is_file() for p in part.iterdir()) or _missing_shards(part):
            missing.append(name)
    return tuple(missing)


def _missing_shards(part: Path) -> bool:
    """True when a sharded component's index names a shard that is not there (yet)."""
    for index in part.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return True
        if not all((part / shard).is_file() for shard in shards):
            return True
    return False


def _size(paths: Iterable[Path]) -> int:
    """Bytes of the real files behind `paths`, each counted once (cache snapshots link shared blobs)."""
    seen, total = set(), 0
    for path in paths:
        try:
            real = path.resolve()
            if real not in seen and real.is_file():
                seen.add(real)
                total += real.stat().st_size
        except OSError:
            continue
    return total


def tree_size(path: Path) -> int:
    return _size(path.rglob("*")) if path.is_dir() else _size([path])


def scan_hf_cache(cache: Path | None = None) -> list[LocalModel]:
    """Diffusers repos in the Hugging Face cache, complete or not."""
    cache = hf_cache_dir() if cache is None else cache
    found = []
    for folder in sorted(cache.glob("models--*--*")):
        snapshot = _snapshot(folder)
        if snapshot is None or not (snapshot / "model_index.json").exists():
            continue  # not a diffusers repo (a text model, a single-file checkpoint repo)
        repo_id = folder.name[len("models--"):].replace("--", "/", 1)
        missing = _missing_components(snapshot)
        found.append(LocalModel(repo_id, repo_id.split("/")[1], "diffusers", "hf-cache", snapshot,
                                tree_size(snapshot), complete=not missing, missing=missing))
    return found


# -- ComfyUI and plain model folders ---------------------------------------------------------------------------
def safetensors_keys(path: Path) -> list[str]:
    """Tensor names from a .safetensors header (8-byte length + JSON), without reading the weights."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100 * 2**20:
            raise ValueError("header too large")
        header = json.loads(f.read(length))
    return [key for key in header if key != "__metadata__"]


def checkpoint_family(path: Path) -> str | None:
    """The flow family a .safetensors file belongs to, or None (SD1.5/SDXL, LoRAs, VAEs, unreadable)."""
    from engine.backends.registry import family_for_keys

    try:
        return family_for_keys(safetensors_keys(path), str(path)).name
    except Exception:  # an unknown family or a broken file: not something Uprez can load
        return None


def scan_folder(folder: Path, where: str) -> list[LocalModel]:
    """Diffusers folders and flow-model .safetensors files directly inside `folder`."""
    from engine.builtin.backend import is_builtin_folder

    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []  # a configured folder that does not exist (yet) lists nothing
    found = []
    for entry in entries:
        if entry.is_dir() and (entry / "model_index.json").is_file() and not is_builtin_folder(entry):
            missing = _missing_components(entry)
            found.append(LocalModel(str(entry.resolve()), entry.name, "diffusers", where, entry.resolve(),
                                    tree_size(entry), complete=not missing, missing=missing))
        elif entry.is_file() and entry.suffix == ".safetensors":
            family = checkpoint_family(entry)
            if family is not None:
                found.append(LocalModel(str(entry.resolve()), entry.name, "safetensors", where, entry.resolve(),
                                        entry.stat().st_size, family=family))
    return found


def comfyui_models_folder(root: Path) -> Path:
    """ComfyUI's install folder or its models/ folder, whichever was given, as the models/ folder."""
    return root / "models" if (root / "models").is_dir() else root


def default_comfyui_roots(home: Path | None = None) -> list[Path]:
    """Where ComfyUI is usually put: a git clone in the home folder, or ComfyUI Desktop's Documents/ComfyUI."""
    home = Path(os.path.expanduser("~")) if home is None else home
    return [home / "ComfyUI", home / "comfy" / "ComfyUI", home / "Documents" / "ComfyUI"]


def read_settings(config_dir: Path) -> dict:
    path = config_dir / SETTINGS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc}); fix it or delete it") from exc
    return data if isinstance(data, dict) else {}


def _paths(text: str) -> list[Path]:
    return [Path(part).expanduser() for part in text.split(os.pathsep) if part.strip()]


def comfyui_roots(config_dir: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """ComfyUI folders: $UPREZ_COMFYUI_DIRS, models.json's "comfyui" list, then the usual places that exist."""
    environ = os.environ if environ is None else environ
    roots = _paths(environ.get(ENV_COMFYUI, ""))
    roots += [Path(p).expanduser() for p in read_settings(config_dir).get("comfyui", []) if isinstance(p, str)]
    roots += [p for p in default_comfyui_roots() if p.is_dir()]
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def model_dirs(config_dir: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Plain model folders: $UPREZ_MODEL_DIRS, models.json's "model_dirs", and <config>/models."""
    environ = os.environ if environ is None else environ
    dirs = _paths(environ.get("UPREZ_MODEL_DIRS", ""))
    dirs += [Path(p).expanduser() for p in read_settings(config_dir).get("model_dirs", []) if isinstance(p, str)]
    return [*dirs, config_dir / "models"]


def scan_comfyui(roots: Iterable[Path]) -> list[LocalModel]:
    found = []
    for root in roots:
        models = comfyui_models_folder(root)
        for sub in COMFYUI_SUBFOLDERS:
            found += scan_folder(models / sub, "comfyui")
    return found


def discover(config_dir: Path, extra_dirs: Iterable[Path] = (), cache: Path | None = None) -> list[LocalModel]:
    """Every model on this machine, each once: the HF cache, ComfyUI, then the plain model folders."""
    models = scan_hf_cache(cache) + scan_comfyui(comfyui_roots(config_dir))
    for folder in [*extra_dirs, *model_dirs(config_dir)]:
        models += scan_folder(folder, "folder")
    unique: dict[str, LocalModel] = {}
    for model in models:
        unique.setdefault(model.id, model)
    return list(unique.values())


def find_local(repo_id: str, models: Iterable[LocalModel]) -> LocalModel | None:
    """A complete copy of `repo_id` on disk: in the HF cache, or a folder of the same name (ComfyUI's
    models/diffusers/FLUX.1-schnell, say), so that a pull never downloads what is already here."""
    name = repo_id.split("/")[-1].lower()
    for model in models:
        if not model.complete or model.kind != "diffusers":
            continue
        if model.id == repo_id or (model.where != "hf-cache" and model.name.lower() == name):
            return model
    return None


def remove(model_id: str, models: Iterable[LocalModel]) -> LocalModel:
    """Delete a model from the Hugging Face cache (all its revisions); other folders belong to their owners."""
    matches = [m for m in models if m.id == model_id or m.name == model_id]
    if not matches:
        raise InvalidInput(f"no model {model_id!r} on this machine; `uprez models list` shows what there is")
    cached = [m for m in matches if m.removable]
    if not cached:
        place = matches[0]
        raise InvalidInput(f"{place.id} is in {'ComfyUI' if place.where == 'comfyui' else 'a folder of yours'} "
                           f"({place.path}); Uprez only removes what is in the Hugging Face cache. Delete it "
                           "there yourself if you no longer need it")
    model = cached[0]
    folder = model.path.parent.parent  # snapshots/<rev> -> models--org--name
    if not folder.name.startswith("models--"):
        raise UprezError(f"unexpected cache layout at {model.path}; not removing anything")
    shutil.rmtree(folder)
    return model


def human_size(size: float) -> str:
    """Sizes as the rest of the engine prints them (binary units)."""
    return format_bytes(int(size))

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
from typing import Any

from engine.errors import InvalidInput, ModelNotFound, UprezError
from engine.models.ref import REPO_ID, ModelRef

SETTINGS_FILE = "models.json"  # in the config folder: {"comfyui": [...], "model_dirs": [...]}
ENV_COMFYUI = "UPREZ_COMFYUI_DIRS"
# ComfyUI's subfolders that can hold what the loader takes: diffusers folders, transformer-only or
# all-in-one .safetensors checkpoints, GGUF transformers.
COMFYUI_SUBFOLDERS = ("diffusers", "diffusion_models", "unet", "checkpoints")
HUB_URL = re.compile(r"huggingface\.co/([\w.-]+/[\w.-]+?)(?:\.git)?/?$")  # a git remote of a Hub repo


@dataclass(frozen=True)
class LocalModel:
    """One usable model on disk. `id` is what a job names: the repo id for the HF cache, else the path."""

    id: str
    name: str
    kind: str  # "diffusers", "safetensors" or "gguf" (transformer files); "vae" or "text-encoder" (components)
    where: str  # "hf-cache", "comfyui", "folder"
    path: Path
    size: int  # bytes on disk
    complete: bool = True  # False: an interrupted download (`uprez models pull` finishes it)
    family: str | None = None
    missing: tuple[str, ...] = field(default=())
    storage: str | None = None  # of a single file: "GGUF Q8_0", "fp8 e4m3fn", "bf16", ...

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


# What model_index.json names and what counts as weights: `uprez models pull` fetches by the same rules.
WEIGHTS = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".onnx_data", ".pb", ".gguf")
SHARD = re.compile(r"^(?P<stem>.+)-(?P<n>\d{5})-of-(?P<total>\d{5})(?P<ext>\..+)$")


def components(index: Mapping[str, Any]) -> list[str]:
    """The component folders model_index.json names (entries like "vae": ["diffusers", "AutoencoderKL"])."""
    return [name for name, value in index.items()
            if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None]


def _missing_components(folder: Path) -> tuple[str, ...]:
    """Components model_index.json names whose folder has no weights yet (an interrupted download)."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return ("model_index.json",)
    if not isinstance(index, dict):
        return ("model_index.json",)
    return tuple(name for name in components(index) if not _component_complete(folder / name))


def _component_complete(part: Path) -> bool:
    """A folder with files in it; when it has a config.json (a model, not a scheduler or tokenizer) also its
    weights, every shard of them: a download fetches the small config first, so config alone is a cut-off one."""
    try:
        files = [p for p in part.iterdir() if p.is_file()]
    except OSError:
        return False
    if not files:
        return False
    if (part / "config.json").is_file() and not any(p.name.endswith(WEIGHTS) for p in files):
        return False
    return not _missing_shards(part, {p.name for p in files})


def _missing_shards(part: Path, names: set[str]) -> bool:
    """True when a shard index, or a shard's own "-0000k-of-0000n" name, points at a shard that is not there."""
    for index in part.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return True
        if not shards <= names:
            return True
    for name in names:
        shard = SHARD.match(name)
        if shard and shard["ext"].endswith(WEIGHTS):
            total = int(shard["total"])
            if any(f"{shard['stem']}-{k:05d}-of-{shard['total']}{shard['ext']}" not in names
                   for k in range(1, total + 1)):
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
    try:
        folders = sorted(cache.glob("models--*--*"))
    except OSError:
        return []
    found = []
    for folder in folders:
        try:
            snapshot = _snapshot(folder)
            if snapshot is None or not (snapshot / "model_index.json").exists():
                continue  # not a diffusers repo (a text model, a single-file checkpoint repo)
            repo_id = folder.name[len("models--"):].replace("--", "/", 1)
            missing = _missing_components(snapshot)
            found.append(LocalModel(repo_id, repo_id.split("/")[1], "diffusers", "hf-cache", snapshot,
                                    tree_size(snapshot), complete=not missing, missing=missing))
        except OSError:
            continue  # one unreadable repo must not hide the others (the server lists what it can)
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
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []  # a configured folder that does not exist (yet) lists nothing
    found = []
    for entry in entries:
        try:
            kind = _kind(entry)
            if kind == "diffusers":
                missing = _missing_components(entry)
                found.append(LocalModel(str(entry.resolve()), entry.name, "diffusers", where, entry.resolve(),
                                        tree_size(entry), complete=not missing, missing=missing))
            elif kind in ("safetensors", "gguf"):
                found += _transformer_file(entry, where)
        except OSError:
            continue  # one unreadable entry must not hide the others
    return found


def _kind(entry: Path) -> str | None:
    """What ModelRef.parse says the entry is, or None when it is no model."""
    try:
        return ModelRef.parse(str(entry)).kind
    except ModelNotFound:
        return None


def _transformer_file(entry: Path, where: str) -> list[LocalModel]:
    """A transformer-only .safetensors (full precision or fp8) or .gguf file of a flow family, else nothing."""
    from engine.models.files import summarize, transformer_family

    try:
        summary = summarize(entry)
    except Exception:  # a broken or foreign file: not something Uprez can load
        return []
    family = transformer_family(summary)
    if family is None:
        return []
    return [LocalModel(str(entry.resolve()), entry.name, entry.suffix[1:], where, entry.resolve(),
                       entry.stat().st_size, family=family, storage=summary.storage)]


def scan_components(models: Path) -> list[LocalModel]:
    """ComfyUI's loose VAE and text-encoder files (models/vae, models/clip, models/text_encoders): listed so
    the user sees them; a transformer file takes its VAE and text encoders from a diffusers base."""
    from engine.models.files import COMPONENT_FOLDERS, summarize

    found = []
    for sub, kind in COMPONENT_FOLDERS.items():
        try:
            entries = sorted((models / sub).iterdir())
        except OSError:
            continue
        for entry in entries:
            if not (entry.is_file() and entry.suffix in (".safetensors", ".gguf")):
                continue
            try:
                storage = summarize(entry).storage
            except Exception:  # unreadable: skip it, as scan_folder does
                continue
            found.append(LocalModel(str(entry.resolve()), entry.name, kind, "comfyui", entry.resolve(),
                                    entry.stat().st_size, storage=storage))
    return found


def comfyui_models_folder(root: Path) -> Path:
    """ComfyUI's install folder or its models/ folder, whichever was given, as the models/ folder."""
    return root / "models" if (root / "models").is_dir() else root


def default_comfyui_roots(home: Path | None = None) -> list[Path]:
    """Where ComfyUI is usually put: a git clone in the home folder, or ComfyUI Desktop's Documents/ComfyUI."""
    home = Path(os.path.expanduser("~")) if home is None else home
    return [home / "ComfyUI", home / "comfy" / "ComfyUI", home / "Documents" / "ComfyUI"]


def read_settings(config_dir: Path) -> dict:
    """models.json, checked: an object whose "comfyui" and "model_dirs" are lists of folder paths."""
    path = config_dir / SETTINGS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc}); fix it or delete it") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a JSON object such as "
                           '{"comfyui": ["/path/to/ComfyUI"], "model_dirs": ["/path/to/models"]}')
    for key in ("comfyui", "model_dirs"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidInput(f'{path}: "{key}" must be a list of folder paths, such as "{key}": '
                               f'["/path/one", "/path/two"], not {json.dumps(value)}')
    return data


def _paths(text: str) -> list[Path]:
    return [Path(part).expanduser() for part in text.split(os.pathsep) if part.strip()]


def comfyui_roots(config_dir: Path, environ: Mapping[str, str] | None = None,
                  settings: Mapping[str, Any] | None = None) -> list[Path]:
    """ComfyUI folders: $UPREZ_COMFYUI_DIRS, models.json's "comfyui" list, then the usual places that exist.
    `settings` is models.json as read_settings returned it, when the caller has read it already."""
    environ = os.environ if environ is None else environ
    settings = read_settings(config_dir) if settings is None else settings
    roots = _paths(environ.get(ENV_COMFYUI, ""))
    roots += [Path(p).expanduser() for p in settings.get("comfyui", [])]
    roots += [p for p in default_comfyui_roots() if p.is_dir()]
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def model_dirs(config_dir: Path, environ: Mapping[str, str] | None = None,
               settings: Mapping[str, Any] | None = None) -> list[Path]:
    """Plain model folders: $UPREZ_MODEL_DIRS, models.json's "model_dirs", and <config>/models."""
    environ = os.environ if environ is None else environ
    settings = read_settings(config_dir) if settings is None else settings
    dirs = _paths(environ.get("UPREZ_MODEL_DIRS", ""))
    dirs += [Path(p).expanduser() for p in settings.get("model_dirs", [])]
    return [*dirs, config_dir / "models"]


def scan_comfyui(roots: Iterable[Path]) -> list[LocalModel]:
    found = []
    for root in roots:
        models = comfyui_models_folder(root)
        for sub in COMFYUI_SUBFOLDERS:
            found += scan_folder(models / sub, "comfyui")
        found += scan_components(models)
    return found


def discover(config_dir: Path, extra_dirs: Iterable[Path] = (), cache: Path | None = None) -> list[LocalModel]:
    """Every model on this machine, each once: the HF cache, ComfyUI, then the plain model folders."""
    models = scan_hf_cache(cache)
    settings = read_settings(config_dir)  # once: it parses and checks models.json
    models += scan_comfyui(comfyui_roots(config_dir, settings=settings))
    for folder in [*extra_dirs, *model_dirs(config_dir, settings=settings)]:
        models += scan_folder(folder, "folder")
    unique: dict[str, LocalModel] = {}
    for model in models:
        unique.setdefault(model.id, model)
    return list(unique.values())


def recorded_repo_id(folder: Path) -> str | None:
    """The Hub repo a model folder outside the cache says it came from, else None. Three records are trusted:
    "_name_or_path" in model_index.json, the remote of a `git clone https://huggingface.co/ORG/NAME`, and a
    folder that is a link into the cache's models--ORG--NAME/snapshots/. A folder's name proves nothing."""
    try:
        named = json.loads((folder / "model_index.json").read_text()).get("_name_or_path")
        if isinstance(named, str) and REPO_ID.match(named):
            return named
    except (OSError, ValueError, AttributeError):
        pass
    try:
        for line in (folder / ".git" / "config").read_text().splitlines():
            key, _, url = line.partition("=")
            remote = HUB_URL.search(url.strip()) if key.strip() == "url" else None
            if remote:
                return remote.group(1)
    except (OSError, ValueError):  # no clone, or not a text file
        pass
    real = folder.resolve()
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return real.parent.parent.name[len("models--"):].replace("--", "/", 1)
    return None


def find_local(repo_id: str, models: Iterable[LocalModel]) -> LocalModel | None:
    """A complete copy of `repo_id` on disk: in the HF cache, or a folder elsewhere (ComfyUI's, say) that records
    it came from `repo_id`, so that a pull does not download again what is already here. A folder that only has
    the same name is not enough: orgA/FLUX.1-dev and orgB/FLUX.1-dev are different models."""
    for model in models:
        if not model.complete or model.kind != "diffusers":
            continue
        if model.where == "hf-cache":
            if model.id == repo_id:
                return model
        elif (recorded_repo_id(model.path) or "").lower() == repo_id.lower():
            return model
    return None


def same_name(repo_id: str, models: Iterable[LocalModel]) -> list[LocalModel]:
    """Diffusers folders outside the cache named like `repo_id` that do not record which repo they are: maybe
    the same model, which `pull` mentions so the user can use it (`--model PATH`) instead of downloading."""
    name = repo_id.split("/")[-1].lower()
    return [m for m in models if m.kind == "diffusers" and m.where != "hf-cache" and m.name.lower() == name
            and (recorded_repo_id(m.path) or "").lower() != repo_id.lower()]


def remove(model_id: str, models: Iterable[LocalModel]) -> LocalModel:
    """Delete a model from the Hugging Face cache (all its revisions); other folders belong to their owners.
    `model_id` is the id `uprez models list` shows; a bare name is taken only when it names one model."""
    models = list(models)
    matches = [m for m in models if m.id == model_id] or [m for m in models if m.name == model_id]
    if not matches:
        raise InvalidInput(f"no model {model_id!r} on this machine; `uprez models list` shows what there is")
    if len(matches) > 1:
        listed = "; ".join(f"{m.id} ({m.where})" for m in matches)
        raise InvalidInput(f"{model_id!r} could be any of {len(matches)} models: {listed}. Nothing was removed; "
                           "run `uprez models remove ID` with the full id of the one to delete")
    [model] = matches
    if not model.removable:
        raise InvalidInput(f"{model.id} is in {'ComfyUI' if model.where == 'comfyui' else 'a folder of yours'} "
                           f"({model.path}); Uprez only removes what is in the Hugging Face cache. Delete it "
                           "there yourself if you no longer need it")
    folder = model.path.parent.parent  # snapshots/<rev> -> models--org--name
    if not folder.name.startswith("models--") or model.path.parent.name != "snapshots":
        raise UprezError(f"unexpected cache layout at {model.path}; not removing anything")
    if folder.is_symlink():
        raise UprezError(f"{folder} is a link to {folder.resolve()}, which may hold other things; Uprez does not "
                         "delete through links. Remove the link and what it points to yourself")
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        left = " (it may be partly removed: `uprez models list` shows what is left)" if folder.exists() else ""
        raise UprezError(f"could not remove {model.id} from {folder}: {exc.strerror or exc}{left}. Check that "
                         "you may write there (the cache may belong to another user), then try again") from exc
    return model

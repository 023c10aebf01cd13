"""Which models a job may name: the default, folders found in the model directories, local paths, cached repos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import InvalidInput, ModelNotFound
from engine.models import store as model_store
from engine.models.ref import ModelRef
from engine.settings import BUILTIN_MODEL


def _model_kind(path: Path) -> str | None:
    """The entry's kind (engine.models.ref.KINDS), or None when it is no model."""
    try:
        return ModelRef.parse(str(path)).kind
    except ModelNotFound:
        return None


def _in_hub_cache(repo_id: str) -> bool:
    """True when a diffusers repo is already in the local Hugging Face cache (the server never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str)
    except Exception:  # a malformed id or an unreadable cache both mean: not usable offline
        return False


def scan(model_dirs: tuple[Path, ...]) -> list[dict[str, Any]]:
    """Models directly inside each model folder: diffusers folders and .safetensors checkpoints."""
    found = []
    for folder in model_dirs:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue  # a configured folder that does not exist (yet) lists nothing
        for entry in entries:
            kind = _model_kind(entry)
            if kind is not None:
                found.append({"id": str(entry.resolve()), "name": entry.name, "kind": kind, "installed": True})
    return found


def _found_elsewhere() -> list[dict[str, Any]]:
    """Complete models in the Hugging Face cache (named by repo id) and in ComfyUI's models/ folders."""
    from engine.server.config import uprez_config_dir

    try:
        config = uprez_config_dir()
        found = model_store.scan_hf_cache() + model_store.scan_comfyui(model_store.comfyui_roots(config))
    except (OSError, InvalidInput):  # an unreadable cache or a broken models.json must not break the listing
        return []
    listed = [{"id": m.id, "name": m.name, "kind": m.kind, "installed": True, "where": m.where, "size": m.size}
              for m in found if m.complete and m.kind in ("diffusers", "safetensors", "gguf")]  # no loose VAEs
    from engine.sr.find import scan_sr, sr_folders

    return listed + [{"id": str(m.path), "name": m.path.name, "kind": "sr", "installed": True, "where": m.where,
                      "size": m.size} for m in scan_sr(sr_folders(config))]


def catalogue(default: str | None, loaded: str | None, model_dirs: tuple[Path, ...]) -> dict[str, Any]:
    """The body of GET /v1/models: the default and loaded model, and every model found on disk."""
    models = scan(model_dirs)
    known = {m["id"] for m in models}
    for model in _found_elsewhere():
        if model["id"] not in known:
            known.add(model["id"])
            models.append(model)
    for source in (BUILTIN_MODEL, default, loaded):
        if source and source not in known:
            known.add(source)
            kind = _model_kind(Path(source)) or "repo"
            models.insert(0, {"id": source, "name": Path(source).name or source, "kind": kind, "installed": True})
    for model in models:
        model["default"] = model["id"] == default
        model["loaded"] = model["id"] == loaded
    from engine.lora.find import find_loras
    from engine.server.config import uprez_config_dir

    try:
        loras = [lora.as_json() for lora in find_loras(uprez_config_dir())]
    except OSError:  # an unreadable folder must not break the listing
        loras = []
    return {"default": default, "loaded": loaded, "model_dirs": [str(d) for d in model_dirs], "models": models,
            "loras": loras}


def resolve(name: str | None, default: str | None) -> str:
    """The model source a job will load, checked now so a typo fails at submit and not after the queue."""
    if name is None or name == default:
        if default is None:
            raise InvalidInput("this engine has no default model, so the job must name one (params.model); "
                               "GET /v1/models lists what is installed, or start it with `uprez serve --model M`")
        return default
    try:
        ref = ModelRef.parse(name)
    except ModelNotFound as exc:
        raise InvalidInput(f"{exc}; GET /v1/models lists what this engine has") from None
    if ref.kind == "builtin" and name == BUILTIN_MODEL:
        return BUILTIN_MODEL
    if ref.path is not None:
        return str(ref.path.resolve())
    if _in_hub_cache(name):
        return name
    raise InvalidInput(f"model {name!r} was not found: it is not a local folder or .safetensors file, nor a "
                       "downloaded Hugging Face repo id; GET /v1/models lists what this engine has")

"""Which VAE and text encoders go with a transformer-only file: a `--base` that is on this machine, never a download.

A base is a diffusers model of the same family (for FLUX.1, also the same guidance: dev or schnell) that is a
local folder or a repo in the Hugging Face cache. Without `--base`, the family's usual repo is taken from the
cache, else any such model Uprez can see: the file's own ComfyUI folder, the other ComfyUI folders, the model
folders. Reading only model_index.json and config.json keeps this cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from engine.backends.registry import Family
from engine.errors import ModelNotFound
from engine.models import store as model_store


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def base_matches(folder: Path, family: Family, guided: bool | None) -> bool:
    """True when `folder` is a complete diffusers model of `family` (and of FLUX.1's same guidance)."""
    class_name = str(_json(folder / "model_index.json").get("_class_name", ""))
    if not class_name.startswith(family.index_prefixes):
        return False
    if family.default_base_guided and guided is not None:
        embeds = _json(folder / "transformer" / "config.json").get("guidance_embeds")
        if embeds is not None and bool(embeds) != guided:
            return False
    return not model_store._missing_components(folder)


def _cached_repo(repo_id: str, cache: Path | None = None) -> Path | None:
    """The snapshot folder of `repo_id` in the Hugging Face cache, or None."""
    cache = model_store.hf_cache_dir() if cache is None else cache
    return model_store._snapshot(model_store.repo_folder(cache, repo_id))


def _comfyui_root(checkpoint: Path) -> Path | None:
    """The models/ folder a checkpoint sits in when it is in ComfyUI's models/unet or models/diffusion_models."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name in ("unet", "diffusion_models") else None


def candidates(checkpoint: Path) -> Iterable[Path]:
    """Diffusers folders on this machine, nearest the checkpoint first."""
    root = _comfyui_root(checkpoint)
    if root is not None:
        yield from (m.path for m in model_store.scan_folder(root / "diffusers", "comfyui") if m.kind == "diffusers")
    from engine.server.config import uprez_config_dir

    try:
        found = model_store.discover(uprez_config_dir())
    except Exception:  # a broken models.json: still look in the cache and beside the file
        found = model_store.scan_hf_cache()
    yield from (m.path for m in found if m.kind == "diffusers" and m.complete)


def usual_base(family: Family, guided: bool | None) -> str:
    """The repo a transformer of `family` usually comes with (FLUX.1-dev's for a guidance-distilled one)."""
    return family.default_base_guided if guided and family.default_base_guided else family.default_base


def resolve_base(family: Family, guided: bool | None, base: str | None, checkpoint: Path) -> str:
    """The local folder that completes `checkpoint`, from `base` when given; one line when there is none."""
    what = f"{checkpoint.name} holds only a {family.name} transformer"
    if base:
        path = Path(base).expanduser()
        if path.is_dir():
            if not base_matches(path, family, None):
                raise ModelNotFound(f"{what}, and --base {base} is not a complete {family.name} diffusers model "
                                    "(model_index.json and its components); pass a folder of the same family")
            return str(path)
        if model_store.REPO_ID.match(base):
            snapshot = _cached_repo(base)
            if snapshot is not None and base_matches(snapshot, family, None):
                return str(snapshot)
            raise ModelNotFound(f"{what}, and --base {base} is not (completely) in the Hugging Face cache; "
                                f"`uprez models pull {base}` fetches it, or pass a local folder")
        raise ModelNotFound(f"{what}, and --base {base} does not exist; pass a diffusers folder or a repo id")
    usual = usual_base(family, guided)
    snapshot = _cached_repo(usual)
    if snapshot is not None and base_matches(snapshot, family, guided):
        return str(snapshot)
    for folder in candidates(checkpoint):
        if base_matches(folder, family, guided):
            return str(folder)
    raise ModelNotFound(
        f"{what}; its VAE and text encoders come from a {family.name} diffusers model, and none is on this machine "
        f"(Hugging Face cache, ComfyUI models/diffusers, model folders). `uprez models pull {usual}` fetches "
        "one, or pass --base FOLDER"
    )


def pairing_note(checkpoint: Path, family_name: str) -> str:
    """For `uprez models list`: the base a transformer file would load with, or what to do when there is none."""
    from engine.backends.registry import GUIDANCE_KEY_MARKERS, family_named
    from engine.models.files import summarize

    family = family_named(family_name)
    try:
        keys = summarize(checkpoint).keys
    except Exception as exc:  # an unreadable file: say so rather than break the listing
        return f"unreadable ({type(exc).__name__})"
    guided = any(marker in key for key in keys for marker in GUIDANCE_KEY_MARKERS)
    try:
        return f"VAE and text encoders from {resolve_base(family, guided, None, checkpoint)}"
    except ModelNotFound:
        return f"no {family_name} base on this machine: `uprez models pull {usual_base(family, guided)}` or --base"

"""Real model folders laid out as the Hugging Face cache and ComfyUI lay them out."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def lay_out_as_hf_cache(folder: Path, cache: Path, repo_id: str, revision: str = REVISION) -> Path:
    """Copy a model into `cache` the way huggingface_hub stores a download: content-addressed blobs, a snapshot
    folder of relative symlinks to them, and refs/main naming the snapshot. Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def lay_out_as_comfyui(folder: Path, comfyui: Path, name: str) -> Path:
    """ComfyUI keeps diffusers-format models in models/diffusers/<name>/."""
    target = comfyui / "models" / "diffusers" / name
    shutil.copytree(folder, target)
    for sub in ("checkpoints", "diffusion_models", "vae", "loras"):
        (comfyui / "models" / sub).mkdir(parents=True, exist_ok=True)
    return target

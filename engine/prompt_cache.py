"""Encoded prompts kept on disk, so a job whose prompt was seen before never loads the text encoders.

An entry is what a family adapter's text encoding returns for one prompt (a dict of tensors, some None), saved
as one .safetensors file named by a hash of everything the tensors depend on: the family and its encoding
options, the text encoders' identity (their files' names, sizes and modification times), the dtype, the device
type and the prompt itself. The last few entries are also kept in memory, so an empty prompt costs nothing
after its first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

ENV_CACHE_DIR = "UPREZ_CACHE_DIR"
FORMAT = "uprez-prompt-v1"  # bump when what an entry holds changes, so old entries are never misread
_IN_MEMORY = 16


def cache_dir() -> Path:
    """$UPREZ_CACHE_DIR/prompt-embeddings, else platformdirs' user cache dir for "uprez"."""
    root = os.environ.get(ENV_CACHE_DIR, "").strip()
    if not root:
        from platformdirs import user_cache_dir

        root = user_cache_dir("uprez")
    return Path(root).expanduser() / "prompt-embeddings"


def entry_key(*, family: str, options: str, encoder_identity: str, dtype: torch.dtype, device_type: str,
              prompt: str) -> str:
    """The hash that names an entry: a change in any input gives another file."""
    fields = [FORMAT, family, options, encoder_identity, str(dtype), device_type, prompt]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


class PromptCache:
    """Disk entries under `folder`, the most recent ones also in memory; failures to write are not fatal."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = cache_dir() if folder is None else Path(folder)
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, key: str, device: torch.device) -> dict[str, Any] | None:
        """The entry on `device`, or None when it was never stored (or cannot be read)."""
        entry = self._recent.get(key)
        if entry is None:
            entry = self._read(self.folder / f"{key}.safetensors")
            if entry is None:
                return None
            self._remember(key, entry)
        self._recent.move_to_end(key)
        return {name: None if value is None else value.to(device) for name, value in entry.items()}

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store one encoding: tensors go to disk on the CPU, None values are listed in the metadata."""
        cpu = {name: None if value is None else value.detach().to("cpu").contiguous().clone()
               for name, value in entry.items()}
        self._remember(key, cpu)
        with contextlib.suppress(OSError):  # a read-only or full cache only costs the next job an encode
            self._write(self.folder / f"{key}.safetensors", cpu)

    def _remember(self, key: str, entry: dict[str, Any]) -> None:
        self._recent[key] = entry
        while len(self._recent) > _IN_MEMORY:
            self._recent.popitem(last=False)

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != FORMAT:
                    return None
                entry: dict[str, Any] = {name: None for name in json.loads(metadata.get("none", "[]"))}
                entry.update({name: f.get_tensor(name) for name in f.keys()})  # noqa: SIM118 (safe_open has no iter)
                return entry
        except Exception:  # missing, truncated or foreign: encode again and overwrite it
            return None

    @staticmethod
    def _write(path: Path, entry: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: value for name, value in entry.items() if value is not None}
        none = sorted(name for name, value in entry.items() if value is None)
        # Written beside and renamed over, so that a reader never sees half an entry.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"format": FORMAT, "none": json.dumps(none)})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

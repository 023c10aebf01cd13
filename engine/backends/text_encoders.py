"""Text encoders loaded only while a prompt is encoded: the model loads without them, a job whose prompt is not in
the prompt cache loads them, encodes and frees them again before the transformer runs (T5-XXL or Qwen2.5-VL
are as big as many transformers, and most upscales have no prompt at all)."""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

TEXT_PREFIXES = ("text_encoder", "tokenizer")


def text_component_names(index: Mapping[str, Any]) -> list[str]:
    """The text encoders and tokenizers a model_index.json names (those it leaves empty are not there)."""
    return sorted(name for name, value in index.items()
                  if name.startswith(TEXT_PREFIXES) and isinstance(value, (list, tuple)) and value[0] is not None)


def deferred_text_components(source: str) -> dict[str, None]:
    """`from_pretrained` keyword arguments that leave a model's text encoders and tokenizers out of the load."""
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(source)
    except (OSError, ValueError):
        return {}  # the load itself will say what is wrong with `source`
    return dict.fromkeys(text_component_names(index))


def local_folder(source: str | None) -> Path | None:
    """The folder a pipeline was loaded from: itself, or a repo id's snapshot in the Hugging Face cache."""
    if not source:
        return None
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # not a cached repo id: nothing to load lazily from
        return None


def files_identity(folder: Path, names: list[str]) -> str:
    """A hash of the components' file names, sizes and modification times: read from the directory alone, so it
    is known without opening (or being able to open) the weights, and changes when any file is replaced."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for name in names:
        for path in sorted((folder / name).rglob("*")):
            stat = path.stat()
            if path.is_file():
                digest.update(json.dumps([str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns]).encode())
    return digest.hexdigest()


class TextEncoders:
    """The text encoders and tokenizers of one pipeline, attached to it only while `loaded()`."""

    def __init__(self, pipe: Any, folder: Path, names: list[str], device: torch.device, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.folder = folder
        self.names = names
        self.device = device
        self.dtype = dtype
        self.keep = False  # set when memory allows the encoders to stay beside the transformer
        self.loads = 0  # how many times they were read from disk (tests and benchmarks look)
        self._identity: str | None = None

    @classmethod
    def for_pipe(cls, pipe: Any, device: torch.device, dtype: torch.dtype) -> TextEncoders | None:
        """Lazy text encoders for a pipeline loaded without them; None when it has them (or came from memory)."""
        folder = local_folder(getattr(pipe, "name_or_path", None))
        if folder is None or not (folder / "model_index.json").is_file():
            return None
        index = json.loads((folder / "model_index.json").read_text())
        names = text_component_names(index)
        if not names or all(getattr(pipe, name, None) is not None for name in names):
            return None
        return cls(pipe, folder, names, device, dtype)

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = files_identity(self.folder, self.names)
        return self._identity

    @property
    def attached(self) -> bool:
        return all(getattr(self.pipe, name, None) is not None for name in self.names)

    def load(self) -> None:
        """Read every missing component from the model's folder and attach it to the pipeline, on the device."""
        index = json.loads((self.folder / "model_index.json").read_text())
        for name in self.names:
            if getattr(self.pipe, name, None) is not None:
                continue
            library, class_name = index[name][:2]
            component_class = getattr(importlib.import_module(library), class_name)
            if name.startswith("tokenizer"):
                component = component_class.from_pretrained(self.folder / name)
            else:
                component = component_class.from_pretrained(self.folder / name, dtype=self.dtype).to(self.device)
                component.eval()
            self.pipe.register_modules(**{name: component})
        self.loads += 1

    def release(self) -> None:
        """Detach the text encoders so their memory goes back (tokenizers are small and stay)."""
        for name in self.names:
            if name.startswith("text_encoder"):
                self.pipe.register_modules(**{name: None})
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    @contextmanager
    def loaded(self) -> Iterator[None]:
        """Attached for the block; freed afterwards unless `keep` says memory allows them to stay."""
        if not self.attached:
            self.load()
        try:
            yield
        finally:
            if not self.keep:
                self.release()

"""`ModelRef.parse`: the one place that decides what a model path or name is.

The loader (engine.backends.loader), the server's model list and job check (engine.server.models) and the
model manager's scan (engine.models.store) all ask this, so a folder, a file or a repo id means the same
thing to each of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelNotFound

# builtin: the model that ships with Uprez (by name, or a folder of its format); diffusers: a folder with
# model_index.json; safetensors / gguf: a transformer-only file (full precision, fp8 or GGUF), completed by a
# base; sr: a pixel upscale model (engine.sr); repo: a Hugging Face repo id, found in the local cache (or, by
# the loader, downloaded).
KINDS = ("builtin", "diffusers", "safetensors", "gguf", "sr", "repo")
TRANSFORMER_SUFFIXES = (".safetensors", ".gguf")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_path(text: str) -> bool:
    """Whether a name that is not on disk was meant as a path (and is then missing) rather than a repo id."""
    return text.startswith((".", "/", "~")) or "\\" in text or text.endswith(TRANSFORMER_SUFFIXES) \
        or not REPO_ID.match(text)


@dataclass(frozen=True)
class ModelRef:
    """What a model path or name is: its kind, and for a local one the file or folder it names."""

    source: str  # as given
    kind: str  # one of KINDS
    path: Path | None = None  # the file or folder (the shipped weights for "builtin"); None for a repo id

    @property
    def local(self) -> bool:
        return self.path is not None

    @classmethod
    def parse(cls, text: str | Path) -> ModelRef:
        """The kind of `text`; ModelNotFound (one line, what to do) when it names no model Uprez can use."""
        from engine.backends.registry import BUILTIN

        text = str(text)
        if text == BUILTIN.name:
            return cls(text, "builtin", BUILTIN.weights())
        try:
            path = Path(text).expanduser()
            is_dir, is_file = path.is_dir(), path.is_file()
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, an unknown ~user: not a path
            raise ModelNotFound(f"model {text[:200]!r} is neither a path nor a Hugging Face repo id") from None
        if is_dir:
            if BUILTIN.is_folder(path):
                return cls(text, "builtin", path)
            if (path / "model_index.json").is_file():
                return cls(text, "diffusers", path)
            raise ModelNotFound(f"{path} is a folder but not a diffusers model (no model_index.json); name the "
                                "folder that holds model_index.json, or a .safetensors or .gguf file")
        if is_file:
            from engine.sr.load import is_sr_checkpoint

            if is_sr_checkpoint(path):
                return cls(text, "sr", path)
            if path.suffix in TRANSFORMER_SUFFIXES:
                return cls(text, path.suffix[1:], path)
            raise ModelNotFound(f"{path} is not a model: expected a diffusers folder, a .safetensors or a .gguf "
                                "file, or an upscale model (.pth/.safetensors)")
        if looks_like_path(text):
            raise ModelNotFound(f"model not found: {text} does not exist")
        return cls(text, "repo")

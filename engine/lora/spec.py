"""`PATH[:WEIGHT]`: one LoRA of a job and how strongly it applies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput
from plugin.uprez_client.protocol import LORA_WEIGHT_LIMIT as WEIGHT_LIMIT  # the bridges check it too


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA file and its weight (1 = as trained, 0 = off: the base model's bytes exactly)."""

    path: str
    weight: float = 1.0

    def __str__(self) -> str:
        return f"{self.path}:{self.weight:g}"


def parse_lora(text: str) -> LoraSpec:
    """'PATH' or 'PATH:WEIGHT'. Only a last ':' followed by a number is a weight, so Windows drive letters and
    paths with colons in them stay paths."""
    text = text.strip()
    if not text:
        raise InvalidInput("--lora needs a path: --lora PATH[:WEIGHT], e.g. --lora upscale.safetensors:0.8")
    path, weight = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and not tail.startswith(("/", "\\")):
        try:
            weight = float(tail)
        except ValueError:
            pass
        else:
            path = head
    if weight != weight or abs(weight) > WEIGHT_LIMIT:  # NaN or out of range
        raise InvalidInput(f"LoRA weight {tail} is out of range; use a number from -{WEIGHT_LIMIT:g} to "
                           f"{WEIGHT_LIMIT:g} (1 = as trained, 0 = off)")
    return LoraSpec(str(Path(path).expanduser()), weight)


def parse_loras(texts: list[str] | tuple[str, ...] | None) -> tuple[LoraSpec, ...]:
    """Every `--lora` of a job, in order."""
    return tuple(parse_lora(text) for text in texts or ())

"""`uprez train-lora`'s options (no torch here: the CLI builds its parser from these defaults); why these
defaults is in engine.lora.train's docstring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput


@dataclass(frozen=True)
class TrainOptions:
    model: str
    photos: Path
    out: Path
    steps: int = 1000
    rank: int = 16
    learning_rate: float = 1e-4
    batch: int = 1
    size: int = 512  # pixel side of the training crops
    factor: int = 2  # the stage's scale: every stage of the upscale is at most 2x
    strengths: tuple[float, ...] = (0.25, 0.35, 0.5)
    val_fraction: float = 0.1
    val_every: int = 100
    save_every: int = 250
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    base: str | None = None
    gradient_checkpointing: bool | None = None  # None: on CUDA only
    optimizer: str = "auto"  # auto (adamw8bit on CUDA with bitsandbytes, else adamw), adamw, adamw8bit
    resume: bool = True
    max_side: int = 1024  # photos are shrunk to this first (crops then cover a useful part of them)
    targets: str = "attention"  # attention projections, or "all" linear layers of the blocks (more capacity)
    val_photos: Path | None = None  # held-out photos; None: every k-th of --photos (val_fraction) is held out
    pool: int = 0  # > 0: encode this many random pairs once and draw from them (where the VAE is the slow part)

    def checked(self) -> TrainOptions:
        if self.out.suffix != ".safetensors":
            raise InvalidInput(f"--out {self.out} must end in .safetensors")
        if self.steps < 1 or self.rank < 1 or self.batch < 1 or self.val_every < 1 or self.save_every < 1:
            raise InvalidInput("--steps, --rank, --batch, --val-every and --save-every must be at least 1")
        if not 0 < self.learning_rate < 1:
            raise InvalidInput(f"--learning-rate {self.learning_rate} is out of range; 1e-4 is the usual")
        if not all(0 < s <= 1 for s in self.strengths):
            raise InvalidInput("strengths must be in (0, 1]")
        if self.factor < 2:
            raise InvalidInput("--factor must be at least 2")
        return self

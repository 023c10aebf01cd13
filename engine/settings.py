"""The request types that cross the API -> job -> pipeline boundary, validated where they are made."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from engine.errors import InvalidInput
from engine.stages import check_scale

HIGH_DETAIL_PROMPT = "high detail, sharp focus, fine texture"
BUILTIN_MODEL = "builtin"  # the model that ships with Uprez, and the default
MIN_TILE_SIZE = 64  # below this a tile holds too little image for the model to recognise anything
MAX_TILE_SIZE = 16384
MAX_TILE_BATCH = 64
# Named trade-offs the editors offer; each model maps them to its own settings (FlowBackend.presets).
PRESETS = ("faithful", "balanced", "creative")


@dataclass(frozen=True)
class StructureGuidance:
    """Structure-guidance switches for one job; every weight 0 (and both flags off) is the plain loop."""

    skip_residual: float = 0.0  # DemoFusion c1 peak: pull x toward the re-noised reference, cosine^3 decay
    direction_alignment: float = 0.0  # HiFlow alpha peak: x0_hat's low band from the reference trajectory
    acceleration_alignment: float = 0.0  # HiFlow beta peak: x0_hat's change toward the reference's
    match_statistics: bool = False  # APT: the upsampled latent gets the previous stage's channel mean/std
    scale_aware: bool = False  # APT: stage start sigma moves with the stage factor
    stochastic: float = 0.0  # eta: share of fresh noise mixed in at each step (0 = deterministic ODE)
    dilated_views: float = 0.0  # DemoFusion c2 peak: a whole-image dilated pass blended into tiled stages

    @property
    def uses_reference(self) -> bool:
        """Whether a stage needs the trajectory of the stage before (for the first: a pass at input size)."""
        return self.direction_alignment > 0.0 or self.acceleration_alignment > 0.0


GUIDANCE_WEIGHTS = ("skip_residual", "direction_alignment", "acceleration_alignment", "stochastic", "dilated_views")
GUIDANCE_FLAGS = ("match_statistics", "scale_aware")


@dataclass(frozen=True)
class UpscaleSettings:
    """What to do to one image. None means the model's own default (for the big models: strength 0.35)."""

    scale: float = 2.0
    preset: str | None = None  # faithful / balanced / creative: the model's settings for that trade-off
    strength: float | None = None  # sigma_start of every stage: 0 = conventional upscale, 1 = all new noise
    steps: int | None = None  # length of the model's full schedule; None = the model's default
    seed: int = 0
    prompt: str = ""
    negative_prompt: str = ""
    cfg_scale: float | None = None  # real CFG for SD3/Qwen/Z-Image; None = the model's default
    guidance: float | None = None  # FLUX-dev distilled guidance; None = the model's default
    tile_size: int | None = None  # pixel side of denoising and VAE tiles; None = the model's (its native size)
    tile_overlap: int | None = None  # pixels neighbouring tiles share; None = the model's (a quarter tile)
    tile_batch: int = 1  # same-sized tiles per model call: faster on a GPU, each one's memory on top
    # Structure guidance (DESIGN §4; README "Structure guidance"); None = the model's default.
    skip_residual: float | None = None  # DemoFusion skip residual, peak weight 0-1
    direction_alignment: float | None = None  # HiFlow direction alignment, peak alpha 0-1
    acceleration_alignment: float | None = None  # HiFlow acceleration alignment, peak beta 0-1
    match_statistics: bool | None = None  # APT statistical matching of each stage's upsampled latent
    scale_aware: bool | None = None  # APT scale-aware start sigma per stage factor
    stochastic: float | None = None  # eta 0-1: fresh noise mixed in at each step; 0 = deterministic ODE
    dilated_views: float | None = None  # DemoFusion dilated global views in tiled stages, peak weight 0-1
    # The first stage's upsample: None / "lanczos", or an SR model (a path or a name in the SR folders).
    upsampler: str | None = None
    # LoRAs on the flow model, each "PATH" or "PATH:WEIGHT" (engine.lora); empty = the model as it is.
    loras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "scale", check_scale(self.scale))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if self.preset is not None and self.preset not in PRESETS:
            raise InvalidInput(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.strength is not None and (isinstance(self.strength, bool) or not isinstance(self.strength, (int, float))
                                          or not 0.0 <= self.strength <= 1.0):
            raise InvalidInput(f"strength must be between 0 and 1 (try 0.2-0.5), got {self.strength!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or not 1 <= self.steps <= 200):
            raise InvalidInput(f"steps must be a whole number from 1 to 200, got {self.steps!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InvalidInput(f"seed must be a whole number from 0 to 2^63-1, got {self.seed!r}")
        for name in ("cfg_scale", "guidance"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)
                                      or not 0.0 <= value <= 30.0):
                raise InvalidInput(f"{name} must be between 0 and 30, got {value!r}")
        for name, low in (("tile_size", MIN_TILE_SIZE), ("tile_overlap", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= MAX_TILE_SIZE):
                raise InvalidInput(f"{name} must be a whole number of pixels from {low} to {MAX_TILE_SIZE}, "
                                   f"got {value!r}")
        if isinstance(self.tile_batch, bool) or not isinstance(self.tile_batch, int) \
                or not 1 <= self.tile_batch <= MAX_TILE_BATCH:
            raise InvalidInput(f"tile_batch must be a whole number from 1 to {MAX_TILE_BATCH}, got {self.tile_batch!r}")
        if self.tile_size is not None and self.tile_overlap is not None and 2 * self.tile_overlap > self.tile_size:
            raise InvalidInput(f"tile_overlap ({self.tile_overlap}) must be at most half of tile_size "
                               f"({self.tile_size})")
        for name in GUIDANCE_WEIGHTS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0.0 <= value <= 1.0):
                raise InvalidInput(f"{name} must be a weight between 0 (off) and 1, got {value!r}")
        for name in GUIDANCE_FLAGS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidInput(f"{name} must be true or false, got {value!r}")
        if self.upsampler is not None and not isinstance(self.upsampler, str):
            raise InvalidInput(f"upsampler must be lanczos or an SR model's path or name, got {self.upsampler!r}")
        if isinstance(self.loras, list):  # JSON has no tuples
            object.__setattr__(self, "loras", tuple(self.loras))
        if not isinstance(self.loras, tuple) or not all(isinstance(text, str) for text in self.loras):
            raise InvalidInput(f"loras must be a list of LoRA files, each PATH or PATH:WEIGHT, got {self.loras!r}")
        from engine.lora.spec import parse_loras

        parse_loras(self.loras)  # a weight out of range is refused here, with the rest of the settings
        for name in ("prompt", "negative_prompt"):
            if not isinstance(getattr(self, name), str):
                raise InvalidInput(f"{name} must be text, got {type(getattr(self, name)).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_preset(self, presets: dict[str, dict[str, Any]]) -> UpscaleSettings:
        """These settings with the preset's values (from the model's `presets`) wherever a field is None."""
        chosen = presets.get(self.preset or "balanced", {})
        return replace(self, **{name: value for name, value in chosen.items() if getattr(self, name) is None})

    def guidance_over(self, default: StructureGuidance) -> StructureGuidance:
        """The job's guidance: these settings where given, the model's `default` elsewhere."""
        return replace(default, **{f.name: getattr(self, f.name) for f in fields(StructureGuidance)
                                   if getattr(self, f.name) is not None})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpscaleSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


# Where weights live between calls, fastest first (engine.memory_modes); "auto" plans from free memory.
MEMORY_MODES = ("gpu", "model-offload", "group-offload", "sequential")
MEMORY_CHOICES = ("auto", *MEMORY_MODES)
MEMORY_HELP = ("where the weights live: auto (plan from free VRAM), gpu (all on it), model-offload (one component "
               "at a time), group-offload (one block at a time, streamed), sequential (one layer at a time)")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and where: a repo id, a diffusers folder or a .safetensors checkpoint."""

    source: str = BUILTIN_MODEL
    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False  # keep components in CPU RAM and move each to the GPU only while it runs
    base: str | None = None  # VAE + text encoders for a transformer-only checkpoint
    memory: str | None = None  # auto, gpu, model-offload, group-offload, sequential (engine.memory_modes)
    quantize: str | None = None  # "nf4" or "int8": bitsandbytes on the transformer (CUDA only)

"""The request types that cross the API -> job -> pipeline boundary, validated where they are made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.errors import InvalidInput
from engine.params import Param, check
from plugin.uprez_client.protocol import MAX_SEED, PRESETS, scale_problem

HIGH_DETAIL_PROMPT = "high detail, sharp focus, fine texture"
BUILTIN_MODEL = "builtin"  # the model that ships with Uprez, and the default
MIN_TILE_SIZE = 64  # below this a tile holds too little image for the model to recognise anything
MAX_TILE_SIZE = 16384
MAX_TILE_BATCH = 64
SAMPLERS = ("euler", "heun")  # how the flow ODE is stepped (engine.sampler)


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


def _param(default: Any, param: Param) -> Any:
    """A settings field whose row of the field table is `param` (engine.params)."""
    return field(default=default, metadata={"param": param})


def _scale_problem(name: str, value: Any) -> str | None:
    return scale_problem(value, name)


def _loras_problem(name: str, value: Any) -> str | None:
    """A list of `PATH[:WEIGHT]` strings whose weights are in range (engine.lora.spec), or the message."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(text, str) for text in value):
        return f"{name} must be a list of LoRA files, each PATH or PATH:WEIGHT, got {value!r}"
    from engine.lora.spec import parse_loras

    try:
        parse_loras(value)
    except InvalidInput as exc:
        return str(exc)
    return None


_WEIGHT = "a weight between 0 (off) and 1"
_GUIDE = "structure guidance (default: the model's; README explains each)"


@dataclass(frozen=True)
class UpscaleSettings:
    """What to do to one image. None means the model's own default (for the big models: strength 0.35).

    Each field's `Param` (engine.params) is its row of the field table: how it is checked here, by the server
    and by the command line (whose upscale flags are made from these rows), with one message.
    """

    scale: float = _param(2.0, Param("number", rule=_scale_problem, optional=False, aliases=("-s",),
                                     help="size factor, > 1 (default 2)"))
    # faithful / balanced / creative: the model's settings for that trade-off
    preset: str | None = _param(None, Param(
        "choice", choices=PRESETS,
        help="faithful / balanced / creative: the model's settings for that trade-off (default balanced); "
             "explicit --strength, --steps and guidance flags win"))
    # sigma_start of every stage: 0 = conventional upscale, 1 = all new noise
    strength: float | None = _param(None, Param(
        "number", "between 0 and 1 (try 0.2-0.5)", 0.0, 1.0,
        help="noise level each stage starts from: 0 = plain Lanczos, higher = more invented "
             "detail (default: the model's; 0.35 for FLUX, SD3, Qwen-Image, Z-Image)"))
    # length of the model's full schedule; None = the model's default
    steps: int | None = _param(None, Param("whole", "a whole number from 1 to 200", 1, 200,
                                           help="length of the model's full schedule (default: the model's)"))
    seed: int = _param(0, Param("whole", "a whole number from 0 to 2^63-1", 0, MAX_SEED, optional=False))
    prompt: str = _param("", Param("text", optional=False, help="optional description of the image"))
    negative_prompt: str = _param("", Param("text", optional=False))
    # real CFG for SD3/Qwen/Z-Image; None = the model's default
    cfg_scale: float | None = _param(None, Param("number", "between 0 and 30", 0.0, 30.0,
                                                 help="classifier-free guidance (SD3, Qwen-Image, Z-Image)"))
    # FLUX-dev distilled guidance; None = the model's default
    guidance: float | None = _param(None, Param("number", "between 0 and 30", 0.0, 30.0,
                                                help="FLUX-dev distilled guidance (default 3.5)"))
    # pixel side of denoising and VAE tiles; None = the model's (its native size)
    tile_size: int | None = _param(None, Param(
        "whole", f"a whole number of pixels from {MIN_TILE_SIZE} to {MAX_TILE_SIZE}", MIN_TILE_SIZE, MAX_TILE_SIZE,
        metavar="PX", help="side of denoising and VAE tiles (default: the model's native size; built-in 1088)"))
    # pixels neighbouring tiles share; None = the model's (a quarter tile)
    tile_overlap: int | None = _param(None, Param(
        "whole", f"a whole number of pixels from 0 to {MAX_TILE_SIZE}", 0, MAX_TILE_SIZE,
        metavar="PX", help="pixels neighbouring tiles share (default: a quarter tile; built-in 64)"))
    # same-sized tiles per model call: faster on a GPU, each one's memory on top
    tile_batch: int = _param(1, Param(
        "whole", f"a whole number from 1 to {MAX_TILE_BATCH}", 1, MAX_TILE_BATCH, optional=False, metavar="N",
        help="same-sized tiles per model call (default 1): faster on a GPU, N times the memory"))
    # Structure guidance (DESIGN §4; README "Structure guidance"); None = the model's default.
    # DemoFusion skip residual, peak weight 0-1
    skip_residual: float | None = _param(None, Param("number", _WEIGHT, 0.0, 1.0, metavar="W", group=_GUIDE,
                                                     help="DemoFusion skip residual, 0-1"))
    # HiFlow direction alignment, peak alpha 0-1
    direction_alignment: float | None = _param(None, Param("number", _WEIGHT, 0.0, 1.0, metavar="A", group=_GUIDE,
                                                           help="HiFlow low-band alignment, 0-1"))
    # HiFlow acceleration alignment, peak beta 0-1
    acceleration_alignment: float | None = _param(None, Param(
        "number", _WEIGHT, 0.0, 1.0, metavar="B", group=_GUIDE, help="HiFlow acceleration alignment, 0-1"))
    # APT statistical matching of each stage's upsampled latent
    match_statistics: bool | None = _param(None, Param(
        "flag", group=_GUIDE, help="APT statistical matching of each stage's upsampled latent"))
    # APT scale-aware start sigma per stage factor
    scale_aware: bool | None = _param(None, Param("flag", group=_GUIDE, help="APT scale-aware start sigma"))
    # eta 0-1: fresh noise mixed in at each step; 0 = deterministic ODE
    stochastic: float | None = _param(None, Param("number", _WEIGHT, 0.0, 1.0, metavar="ETA", group=_GUIDE,
                                                  help="fresh noise per step, 0-1 (0 = ODE)"))
    # DemoFusion dilated global views in tiled stages, peak weight 0-1
    dilated_views: float | None = _param(None, Param(
        "number", _WEIGHT, 0.0, 1.0, metavar="W", group=_GUIDE,
        help="DemoFusion dilated whole-image views in tiled stages, 0-1"))
    # The first stage's upsample: None / "lanczos", or an SR model (a path or a name in the SR folders).
    upsampler: str | None = _param(None, Param(
        "text", "lanczos or an SR model's path or name", metavar="lanczos|PATH|NAME",
        help="the flow upscale's first upsample: lanczos (default) or an upscale model's path or name "
             "(`uprez models list`); presets then refine with less strength"))
    sampler: str = _param("euler", Param(
        "choice", choices=SAMPLERS, optional=False,
        help="the ODE sampler: euler (1 model call per step) or heun (2, more accurate)"))
    # LoRAs on the flow model, each "PATH" or "PATH:WEIGHT" (engine.lora); empty = the model as it is. The CLI's
    # --lora (repeatable) is made by hand: the table's flags take one value each.
    loras: tuple[str, ...] = _param((), Param("text", "a list of LoRA files, each PATH or PATH:WEIGHT",
                                              rule=_loras_problem, optional=False, cli=False))

    def __post_init__(self) -> None:
        problem = check(SETTINGS_PARAMS, {f.name: getattr(self, f.name) for f in fields(self)})
        if problem is not None:
            raise InvalidInput(problem)
        object.__setattr__(self, "scale", float(self.scale))
        if self.tile_size is not None and self.tile_overlap is not None and 2 * self.tile_overlap > self.tile_size:
            raise InvalidInput(f"tile_overlap ({self.tile_overlap}) must be at most half of tile_size "
                               f"({self.tile_size})")
        if isinstance(self.loras, list):  # JSON has no tuples
            object.__setattr__(self, "loras", tuple(self.loras))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpscaleSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


# The field table: each settings field's row, by name.
SETTINGS_PARAMS: dict[str, Param] = {f.name: f.metadata["param"] for f in fields(UpscaleSettings)}

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

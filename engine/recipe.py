"""One job's recipe, resolved once from its settings and the model: nothing left for a later layer to default.

`UpscaleSettings` says what the user asked for (None = the model's choice); `resolve` fills every choice in
one place (preset, the model's defaults, tiles, structure guidance, sampler) and plans the stages. The
pipeline takes the `Recipe` and reads no settings.

Two "guidances", kept apart by name: `guidance` here is structure guidance (HiFlow, DemoFusion, APT;
`StructureGuidance`), and `distilled_guidance` is FLUX's guidance-distilled embedding, which the settings,
the server's params and the CLI still call `guidance` (`--guidance`) for compatibility.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from engine.backends.base import FlowBackend
from engine.errors import InvalidInput
from engine.settings import MIN_TILE_SIZE, StructureGuidance, UpscaleSettings
from engine.stages import Stage, plan
from engine.tile_grid import TileGrid


@dataclass(frozen=True)
class Tiles:
    """Tile side and overlap in pixels, and tiles per model call, as the job runs them."""

    size: int
    overlap: int
    batch: int

    def grid(self, backend: FlowBackend) -> TileGrid:
        return TileGrid.for_backend(backend, self.size, self.overlap, self.batch)


@dataclass(frozen=True)
class Recipe:
    """Everything the pipeline needs to run one job, resolved (README "How a job flows")."""

    stages: tuple[Stage, ...]
    strength: float
    steps: int
    seed: int
    sampler: str  # "euler" or "heun"; with guidance.stochastic > 0 Euler runs as euler_ancestral
    guidance: StructureGuidance
    tiles: Tiles
    grid: TileGrid  # `tiles` in latent positions for this model
    prompt: str
    negative_prompt: str
    cfg_scale: float  # real classifier-free guidance (SD3, Qwen-Image, Z-Image, Chroma); 1 = off
    distilled_guidance: float | None  # FLUX's distilled guidance (settings' `guidance`); None where the model has none
    region_only: bool  # with a mask: RGBA whose alpha is the upscaled mask
    feather: float  # with a mask: Gaussian sigma in input pixels that softens its edge
    preview_every: int  # every Nth step carries a preview image; 0 = none

    @property
    def needs_reference(self) -> bool:
        """Whether the first stage needs the input's latent first (for alignment, with its trajectory)."""
        return bool(self.stages) and self.stages[0].steps > 0 and (
            self.guidance.uses_reference or self.guidance.match_statistics)


def resolve(settings: UpscaleSettings, backend: FlowBackend, *, size: tuple[int, int],
            final_size: tuple[int, int] | None = None, region_only: bool = False, feather: float = 0.0,
            preview_every: int = 0) -> Recipe:
    """The job's recipe: explicit settings win, then the preset's values (the model's `presets`), then the
    model's defaults. `size` is the (width, height) the model works on (a mask's box), `final_size` where its
    last stage lands (default: `size` times the scale)."""
    chosen = backend.presets.get(settings.preset or "balanced", {})
    settings = replace(settings, **{name: value for name, value in chosen.items() if getattr(settings, name) is None})
    given = {f.name: getattr(settings, f.name) for f in fields(StructureGuidance)
             if getattr(settings, f.name) is not None}
    guidance = replace(backend.default_structure, **given)
    sampler = settings.sampler
    if sampler != "euler" and guidance.stochastic > 0.0:
        raise InvalidInput(f"stochastic sampling (eta {guidance.stochastic:g}) runs with the euler sampler only; "
                           "use --sampler euler or --stochastic 0")
    strength = backend.default_strength if settings.strength is None else float(settings.strength)
    steps = settings.steps or backend.default_steps
    tiles = tiles_for(settings, backend)
    stages = plan(size[0], size[1], settings.scale, strength, steps, backend, final_size=final_size,
                  scale_aware=guidance.scale_aware)
    cfg_scale = getattr(backend, "default_cfg_scale", 1.0) if settings.cfg_scale is None else settings.cfg_scale
    distilled = getattr(backend, "default_guidance", None) if settings.guidance is None else settings.guidance
    return Recipe(
        stages=tuple(stages), strength=strength, steps=steps, seed=settings.seed, sampler=sampler,
        guidance=guidance, tiles=tiles, grid=tiles.grid(backend), prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        cfg_scale=float(cfg_scale), distilled_guidance=distilled,
        region_only=region_only, feather=float(feather),
        preview_every=preview_every,
    )


def tiles_for(settings: UpscaleSettings, backend: FlowBackend) -> Tiles:
    """The job's tiles in pixels: the settings' sizes where given, else the model's."""
    return Tiles(settings.tile_size or backend.default_tile_size,
                 backend.default_tile_overlap if settings.tile_overlap is None else settings.tile_overlap,
                 settings.tile_batch)


def halved(tiles: Tiles) -> Tiles:
    """Tiles of half the side, one per call (a quarter of the memory or less), for a retry after running out."""
    size = max(MIN_TILE_SIZE, tiles.size // 2)
    return Tiles(size, min(tiles.overlap, size // 4), 1)


def smaller_tiles(recipe: Recipe, backend: FlowBackend) -> Recipe:
    """The same job with `halved` tiles."""
    tiles = halved(recipe.tiles)
    return replace(recipe, tiles=tiles, grid=tiles.grid(backend))

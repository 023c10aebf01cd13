"""`resolve(settings, backend) -> Recipe`: every choice filled in one place, explicit settings first, then the
preset, then the model; nothing left None for a later layer."""

from __future__ import annotations

import dataclasses

import pytest

from engine.errors import InvalidInput
from engine.recipe import Recipe, Tiles, halved, resolve, smaller_tiles
from engine.settings import MIN_TILE_SIZE, StructureGuidance, UpscaleSettings


@pytest.fixture(scope="module")
def flux(tiny_backend):
    return tiny_backend("flux-dev")


def test_a_default_job_takes_the_models_own_choices_and_leaves_nothing_open(flux):
    recipe = resolve(UpscaleSettings(), flux, size=(64, 48))
    assert recipe.strength == flux.default_strength and recipe.steps == flux.default_steps
    assert recipe.guidance == flux.default_structure
    assert recipe.tiles == Tiles(flux.default_tile_size, flux.default_tile_overlap, 1)
    assert recipe.grid == recipe.tiles.grid(flux)
    assert recipe.sampler == "euler" and recipe.cfg_scale == flux.default_cfg_scale
    assert recipe.distilled_guidance == flux.default_guidance  # FLUX-dev's embedding; the settings call it guidance
    assert [s.size for s in recipe.stages] == [(128, 96)]
    # nothing is left open (distilled_guidance is None only for a model that takes none)
    open_fields = [f.name for f in dataclasses.fields(Recipe) if getattr(recipe, f.name) is None]
    assert open_fields == []


def test_explicit_settings_win_over_the_preset_and_the_preset_over_the_model(flux):
    creative = resolve(UpscaleSettings(preset="creative"), flux, size=(64, 48))
    assert creative.strength == flux.presets["creative"]["strength"]
    assert creative.guidance.direction_alignment == flux.presets["creative"]["direction_alignment"]
    assert creative.guidance.match_statistics == flux.default_structure.match_statistics
    mine = resolve(UpscaleSettings(preset="creative", strength=0.3, direction_alignment=0.0, guidance=2.0,
                                   tile_size=256, tile_overlap=32, tile_batch=2, sampler="heun"), flux, size=(64, 48))
    assert (mine.strength, mine.guidance.direction_alignment, mine.distilled_guidance) == (0.3, 0.0, 2.0)
    assert mine.tiles == Tiles(256, 32, 2) and mine.sampler == "heun"


def test_structure_guidance_and_distilled_guidance_do_not_share_a_name(flux):
    recipe = resolve(UpscaleSettings(guidance=7.0), flux, size=(32, 32))
    assert isinstance(recipe.guidance, StructureGuidance) and recipe.distilled_guidance == 7.0


def test_mask_handling_and_previews_travel_in_the_recipe(flux):
    recipe = resolve(UpscaleSettings(), flux, size=(32, 32), region_only=True, feather=2.5, preview_every=3)
    assert (recipe.region_only, recipe.feather, recipe.preview_every) == (True, 2.5, 3)


def test_smaller_tiles_halves_the_side_keeps_a_quarter_overlap_and_one_tile_per_call(flux):
    recipe = resolve(UpscaleSettings(tile_size=512, tile_overlap=200, tile_batch=4), flux, size=(64, 64))
    smaller = smaller_tiles(recipe, flux)
    assert smaller.tiles == Tiles(256, 64, 1) and smaller.grid == smaller.tiles.grid(flux)
    assert dataclasses.replace(smaller, tiles=recipe.tiles, grid=recipe.grid) == recipe  # nothing else changes
    assert halved(Tiles(100, 10, 1)) == Tiles(MIN_TILE_SIZE, 10, 1)


def test_heun_with_fresh_noise_is_refused(flux):
    with pytest.raises(InvalidInput, match="euler sampler only"):
        resolve(UpscaleSettings(sampler="heun", stochastic=0.2), flux, size=(32, 32))

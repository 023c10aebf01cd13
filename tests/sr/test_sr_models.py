"""SR models through spandrel, loaded from real files the way a user's are: sizes, tiles, depth, alpha, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.pixels import conventional_resize, feather_mask, from_image, mask_resize
from engine.sr.load import get_sr_model, load_sr_model
from engine.sr.resize import passes_for
from engine.sr.tiles import run_tiled
from engine.sr.upscale import upscale_sr
from engine.testing.tiny_sr import ARCHITECTURES

SPANDREL_NAMES = {"esrgan": "ESRGAN", "compact": "RealESRGAN Compact", "swinir": "SwinIR", "span": "SPAN",
                  "omnisr": "OmniSR", "dat": "DAT"}


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour ramps plus fine noise: detail that a model and Lanczos treat differently."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin((x + y) / 5.0)], axis=2)
    return (base * 0.8 + rng.random((height, width, 3), dtype=np.float32) * 0.2).clip(0, 1)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_loads_from_its_file_and_upscales(sr_file, arch, suffix):
    path = sr_file(arch, 2, suffix)
    model = load_sr_model(path, device="cpu")
    assert (model.architecture, model.scale, model.dtype) == (SPANDREL_NAMES[arch], 2, torch.float32)
    image = np.round(_photo(19, 23) * 255).astype(np.uint8)
    out = upscale_sr(image, model, scale=2)
    assert out.shape == (38, 46, 3) and out.dtype == np.uint8
    lanczos = np.round(conventional_resize(from_image(image).rgb, (46, 38)) * 255)
    assert np.abs(out.astype(float) - lanczos).max() > 8  # the network ran: not a Lanczos resize


def test_safetensors_and_pth_of_the_same_weights_give_the_same_pixels(sr_file):
    image = _photo(20, 20)
    a = upscale_sr(image, load_sr_model(sr_file("span", 2, ".pth"), device="cpu"), scale=2)
    b = upscale_sr(image, load_sr_model(sr_file("span", 2, ".safetensors"), device="cpu"), scale=2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_equals_untiled_within_one_level_when_the_receptive_field_fits(sr_file, scale):
    # Compact with 2 body convs sees 4 input pixels each way; the tiles drop 8 (a quarter of the overlap).
    model = load_sr_model(sr_file("compact", scale), device="cpu")
    x = torch.from_numpy(_photo(150, 170)).permute(2, 0, 1)[None]
    whole = model(x).float()
    tiles = []
    tiled = run_tiled(model, x, tile=64, overlap=32, on_tile=lambda done, total: tiles.append((done, total)))
    assert tiles[-1] == (len(tiles), len(tiles)) and len(tiles) >= 9
    assert (tiled - whole).abs().max().item() < 1 / 255
    # Not vacuous: without the dropped margin (seams at the tile edges) the same tiles are far off.
    seamy = run_tiled(model, x, tile=64, overlap=2)
    assert (seamy - whole).abs().max().item() > 4 / 255


@pytest.mark.parametrize(("native", "scale", "passes"), [(4, 1.5, 1), (4, 4, 1), (4, 8, 2), (2, 3, 2), (2, 2, 1),
                                                         (1, 4, 1), (2, 8, 2)])
def test_the_model_runs_once_or_twice(native, scale, passes):
    assert passes_for(native, scale) == passes


@pytest.mark.parametrize("scale", [1.5, 2, 3, 4, 8])
@pytest.mark.parametrize("arch", ["compact", "span"])
def test_exact_sizes_at_any_scale(sr_file, arch, scale):
    model = load_sr_model(sr_file(arch, 2 if arch == "span" else 4), device="cpu")
    out = upscale_sr(_photo(13, 17), model, scale=scale)
    assert out.shape == (int(13 * scale + 0.5), int(17 * scale + 0.5), 3) and out.dtype == np.float32


def test_sixteen_bit_rgba_round_trip_with_alpha_resized_conventionally(sr_file):
    model = load_sr_model(sr_file("swinir", 2), device="cpu")
    rng = np.random.default_rng(3)
    rgba = np.concatenate([_photo(21, 18), rng.random((21, 18, 1), dtype=np.float32)], axis=2)
    image = np.round(rgba * 65535).astype(np.uint16)
    out = upscale_sr(image, model, scale=3)
    assert out.shape == (63, 54, 4) and out.dtype == np.uint16
    alpha = np.round(conventional_resize(from_image(image).alpha, (54, 63)) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(out[:, :, 3], alpha)
    lanczos = np.round(conventional_resize(from_image(image).rgb, (54, 63)) * 65535)
    assert np.abs(out[:, :, :3].astype(float) - lanczos).max() > 2000
    # 16 bits kept: the output uses levels an 8-bit result could not hold.
    assert np.any(out[:, :, :3] % 257 != 0)


def test_eight_bit_grey_and_float_come_back_in_their_own_format(sr_file):
    model = load_sr_model(sr_file("compact", 2), device="cpu")
    grey = np.round(_photo(10, 12)[:, :, 0] * 255).astype(np.uint8)
    assert upscale_sr(grey, model, scale=2).shape == (20, 24)
    as_float = upscale_sr(_photo(10, 12).astype(np.float64), model, scale=2)
    assert as_float.dtype == np.float64 and as_float.shape == (20, 24, 3)


@pytest.mark.parametrize("feather", [0.0, 3.0])
def test_outside_the_mask_the_output_is_the_lanczos_upscale_exactly(sr_file, feather):
    model = load_sr_model(sr_file("omnisr", 2), device="cpu")
    image = np.round(_photo(96, 110) * 255).astype(np.uint8)
    mask = np.zeros((96, 110), np.uint8)
    mask[60:80, 70:100] = 255
    out = upscale_sr(image, model, scale=2, mask=mask, feather=feather)
    lanczos = np.round(conventional_resize(from_image(image).rgb, (220, 192)) * 255).astype(np.uint8)
    weight = mask_resize(feather_mask(mask.astype(np.float32) / 255, feather), (220, 192))
    outside = weight == 0
    assert outside.sum() > 10000
    np.testing.assert_array_equal(out[outside], lanczos[outside])
    inside = weight > 0.99
    assert np.abs(out[inside].astype(float) - lanczos[inside]).max() > 8


def test_region_only_returns_the_mask_as_alpha(sr_file):
    model = load_sr_model(sr_file("compact", 2), device="cpu")
    mask = np.zeros((30, 30), np.float32)
    mask[5:15, 5:20] = 1.0
    out = upscale_sr(_photo(30, 30), model, scale=2, mask=mask, region_only=True)
    assert out.shape == (60, 60, 4)
    np.testing.assert_allclose(out[:, :, 3], mask_resize(mask, (60, 60)), atol=1e-6)


def test_progress_per_tile_ends_at_one_and_cancel_stops_between_tiles(sr_file):
    from engine.progress import Cancelled, CancelToken

    model = load_sr_model(sr_file("compact", 2), device="cpu")
    events = []
    upscale_sr(_photo(150, 150), model, scale=4, tile_size=64, on_progress=events.append)
    assert events[-1].fraction == 1.0 and events[-1].stages == 2  # a 2x model twice for 4x
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and len(events) > 9
    cancel = CancelToken()
    seen = []

    def stop_after_two(event):
        seen.append(event)
        if len(seen) == 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        upscale_sr(_photo(150, 150), model, scale=2, tile_size=64, on_progress=stop_after_two, cancel=cancel)
    assert len(seen) == 2


def test_out_of_memory_halves_the_tile_and_starts_again(sr_file, monkeypatch):
    # A fake only for what cannot happen here: the CPU does not run out of memory on a 64 px tile.
    from engine.sr import tiles

    model = load_sr_model(sr_file("compact", 2), device="cpu")
    sides = []
    real = tiles.run_tiled

    def run(model, x, *, tile, **kw):
        sides.append(tile)
        if tile > 128:
            raise torch.OutOfMemoryError("fake: out of memory")
        return real(model, x, tile=tile, **kw)

    monkeypatch.setattr(tiles, "run_tiled", run)
    x = torch.from_numpy(_photo(40, 40)).permute(2, 0, 1)[None]
    out = tiles.run_with_retry(model, x, tile=512)
    assert sides == [512, 256, 128] and out.shape == (1, 3, 80, 80)


def test_tile_size_follows_free_memory(sr_file):
    from engine.sr.tiles import MAX_TILE, MIN_TILE, auto_tile

    model = load_sr_model(sr_file("compact", 4), device="cpu")
    assert auto_tile(model, free=2**40) == MAX_TILE
    assert auto_tile(model, free=2**20) == MIN_TILE
    assert MIN_TILE < auto_tile(model, free=2**30) < MAX_TILE


def test_the_loaded_model_is_kept_for_the_next_job(sr_file):
    path = sr_file("compact", 2)
    assert get_sr_model(path, device="cpu") is get_sr_model(path, device="cpu")


def test_precision_is_fp32_on_the_cpu_and_what_the_architecture_supports_when_asked(sr_file):
    from engine.sr.load import pick_dtype, read_descriptor

    span = read_descriptor(sr_file("span", 2))
    assert pick_dtype(span, torch.device("cpu")) == torch.float32
    assert pick_dtype(span, torch.device("cpu"), "bfloat16") == torch.bfloat16 == load_sr_model(
        sr_file("span", 2), device="cpu", dtype="bfloat16").dtype
    unsupported = next(d for d in (read_descriptor(sr_file(a, 2)) for a in ARCHITECTURES) if not d.supports_half)
    assert pick_dtype(unsupported, torch.device("cpu"), "float16") == torch.float32


def test_tiny_models_built_while_another_thread_loads_with_empty_weights_are_real():
    # The test server's warm-up loads a diffusers model under accelerate's init_empty_weights, which patches
    # nn.Module.register_parameter for the whole process; a tiny SR model built meanwhile got meta tensors
    # (seen as "Cannot copy out of meta tensor" in the SR server tests). The helper builds again after it.
    import threading

    from accelerate import init_empty_weights

    from engine.testing.tiny_sr import tiny_state_dict

    expected = tiny_state_dict("swinir", 4)
    inside, release = threading.Event(), threading.Event()

    def hold():
        with init_empty_weights():
            inside.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    threading.Timer(0.5, release.set).start()
    try:
        got = tiny_state_dict("swinir", 4)
    finally:
        release.set()
        holder.join()
    assert not any(v.is_meta for v in got.values())
    assert all(torch.equal(got[k], expected[k]) for k in expected)

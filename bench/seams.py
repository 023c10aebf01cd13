"""Tile seams against tile overlap, tile placement and the VAE statistics pass (issue 21 items 2 and 3).

    python bench/seams.py [--side 512] [--tile 256]

The tiny random FLUX.1-dev (the test fixture) on the bundled photo at `--side` px with tiles of `--tile` px
(the default is a 2048² stage in 1024 px tiles, scaled down 4x): for the VAE's encode and decode and for
one denoising velocity, each tiled result against the untiled one. `border` is the mean error within one
latent cell (8 px) of an inner tile edge over the mean error elsewhere (engine.testing.seams: 1 = no seam);
`error` the mean absolute error; `area` the area the tiles compute over the image's (overlaps twice).
`today` is the tiling before issue 21 (every tile full size, the last flush with the end, a quarter tile
overlap, the statistics pass on every tile); `spread` is TileGrid's denoising tiles (shrunk to the overlap
they need, evenly spaced) with the VAE's tiles as before, their statistics pass on all tiles or on the
fewest that cover the image (engine.tile_grid.covering_windows). The tone step is also relative to the error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from engine.testing.seams import border_ratio, tone_step  # noqa: E402
from engine.tile_grid import TileGrid, blend_weights, tile_windows  # noqa: E402
from engine.tiled_model import tiled_decode, tiled_encode, tiled_velocity  # noqa: E402


@dataclass(frozen=True)
class TodayGrid(TileGrid):
    """The placement before issue 21: full-size tiles, the last one flush with the end."""

    def windows(self, height: int, width: int):  # noqa: ANN201
        return tile_windows(height, width, self.tile, self.overlap, self.multiple)

    def vae_windows(self, height: int, width: int):  # noqa: ANN201
        return self.windows(height, width)


def references(backend, pixels: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """The untiled results every tiled one is compared with."""
    latent = backend.encode(pixels)
    generator = torch.Generator().manual_seed(0)
    x = 0.5 * latent + 0.5 * torch.randn(latent.shape, generator=generator)
    cond = backend.condition_stage(backend.encode_prompt(""), latent)
    return {"latent": latent, "decoded": backend.decode(latent), "x": x, "velocity": backend.velocity(x, 0.5, cond)}


def measure(backend, pixels: torch.Tensor, grid: TileGrid, ref: dict[str, torch.Tensor]) -> dict[str, float]:  # noqa: ANN001
    f, latent, x = backend.vae_scale, ref["latent"], ref["x"]
    windows, vae_windows = grid.windows(*latent.shape[-2:]), grid.vae_windows(*latent.shape[-2:])
    area = sum(w.height * w.width for w in windows) / (latent.shape[-2] * latent.shape[-1])
    cond = backend.condition_stage(backend.encode_prompt(""), latent)
    weights = blend_weights(*latent.shape[-2:], windows, grid.overlap)
    errors = {"encode": (tiled_encode(backend, pixels, grid) - latent)[0],
              "decode": (tiled_decode(backend, latent, grid) - ref["decoded"])[0],
              "velocity": (tiled_velocity(backend, x, 0.5, cond, windows, weights, torch.zeros_like(x))
                           - ref["velocity"])[0]}
    out = {"tiles": len(windows), "area": area}
    for name, error in errors.items():
        scale = f if name == "decode" else 1
        tiles = windows if name == "velocity" else vae_windows
        out[f"{name}_border"] = border_ratio(error.abs().mean(0), tiles, scale)
        out[f"{name}_tone"] = tone_step(error, tiles, scale)
        out[f"{name}_error"] = float(error.abs().mean())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--model", help="a model folder (default: the tiny random FLUX fixture)")
    parser.add_argument("--spread", type=int, default=3, help="how many of the overlaps 1/4, 1/8, 1/16 to try spread")
    args = parser.parse_args(argv)
    from bench.scale import tiny_flux
    from engine.backends.loader import load_backend

    torch.set_num_threads(2)
    backend = load_backend(args.model or tiny_flux(), device="cpu")
    with Image.open(ROOT / "engine" / "data" / "sample.jpg") as image:
        rgb = image.convert("RGB").resize((args.side, args.side), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    ref = references(backend, pixels)
    base = TileGrid.for_backend(backend, args.tile, args.tile // 4)
    tile, quarter, patch = base.tile, base.overlap, base.multiple
    configs = [("today", "1/4", "1/4", TodayGrid(tile, quarter, patch))]
    for name, divisor in (("1/4", 4), ("1/8", 8), ("1/16", 16))[:args.spread]:
        overlap = TileGrid.for_backend(backend, args.tile, args.tile // divisor).overlap
        configs += [("spread", name, "1/4", TileGrid(tile, overlap, patch, vae_overlap=quarter))]
    eighth = TileGrid.for_backend(backend, args.tile, args.tile // 8).overlap
    configs += [("spread", "1/8", "1/4", TileGrid(tile, eighth, patch, vae_overlap=quarter, statistics_cover=True))]
    print(f"Tiny random FLUX.1-dev, sample.jpg at {args.side}² px, tiles of {args.tile} px. Per part: border ratio "
          "(1 = no seam), tone step between neighbouring tiles over the mean error (0 = none), mean abs error.\n")
    print("| model tiles | overlap | VAE overlap | statistics pass on | tiles | model area | "
          "encode border / tone / error | decode border / tone / error | velocity border / tone / error |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for placement, overlap, vae_overlap, grid in configs:
        r = measure(backend, pixels, grid, ref)
        parts = " | ".join(f"{r[k + '_border']:.2f} / {r[k + '_tone']:.3f} / {r[k + '_error']:.4f}"
                           for k in ("encode", "decode", "velocity"))
        statistics = "covering tiles" if grid.statistics_cover else "all tiles"
        print(f"| {placement} | {overlap} | {vae_overlap} | {statistics} | {r['tiles']} | "
              f"{r['area']:.2f} | {parts} |", flush=True)


if __name__ == "__main__":
    main()

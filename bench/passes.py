"""Model work per output megapixel: transformer passes x tokens, Uprez's defaults next to DemoFusion's and
HiFlow's published settings for the same output.

    python bench/passes.py [--outputs 2048,4096] [--input 1024]

No model runs: Uprez's count comes from its own stage plan and tile windows for FLUX.1-dev's geometry
(VAE x8, 2x2 patches, native 1024 px, 28 steps, strength 0.35, the default guidance's reference pass at
the input size); the others from their papers' settings (DESIGN.md, Facts: DemoFusion's SDXL code with
50 steps per stage, native windows at half overlap and dilated views; HiFlow's 30 base + 16 (2K) + 10 (4K)
steps at full attention). Tokens are latent positions / 4 (one 2x2 patch) for every method, so the
columns compare; attention cost grows with tokens², which the last column shows for the largest pass.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

VAE, PATCH, NATIVE = 8, 2, 1024


@dataclass
class Count:
    passes: int = 0
    tokens: int = 0
    largest: int = 0  # tokens in the largest single pass

    def add(self, passes: int, tokens_each: int) -> None:
        self.passes += passes
        self.tokens += passes * tokens_each
        self.largest = max(self.largest, tokens_each)


def tokens(side_px: int) -> int:
    return (side_px // (VAE * PATCH)) ** 2


def uprez(input_px: int, output_px: int) -> Count:
    """Our plan: the schedule's tail below strength per <=2x stage, native tiles at the default eighth overlap,
    spread evenly (engine.tile_grid.TileGrid, as the pipeline places them)."""
    from engine.schedule import ShiftRule, remaining_sigmas
    from engine.stages import stage_sizes
    from engine.tile_grid import TileGrid

    rule = ShiftRule(shift=3.0, dynamic=True)  # FLUX.1-dev's scheduler config
    steps = len(remaining_sigmas(28, 0.35, rule, tokens(NATIVE))) - 1
    count = Count()
    grid = TileGrid(NATIVE // VAE, NATIVE // 8 // VAE, PATCH)

    def add(side: int) -> None:
        latent = side // VAE
        for w in (grid.windows(latent, latent) if not grid.fits(latent, latent) else []):
            count.add(steps, (w.height // PATCH) * (w.width // PATCH))
        if grid.fits(latent, latent):
            count.add(steps, tokens(side))

    add(input_px)  # the first stage's reference pass
    for side, _ in stage_sizes(input_px, input_px, output_px / input_px):
        add(side)
    return count


def demofusion(output_px: int) -> Count:
    """SDXL, 50 steps per stage at 1x, 2x, ... of 1024 px; native windows at half overlap plus s² dilated views."""
    count = Count()
    for s in range(1, output_px // NATIVE + 1):
        side = s * NATIVE
        per_axis = 1 if s == 1 else math.ceil((side - NATIVE) / (NATIVE // 2)) + 1
        count.add(50 * per_axis * per_axis, tokens(NATIVE))
        if s > 1:
            count.add(50 * s * s, tokens(NATIVE))  # the dilated views: s² views of the native size
    return count


def hiflow(output_px: int) -> Count:
    """FLUX, 30 steps at 1024 px, then 16 at 2K and 10 at 4K, each stage one full-attention pass."""
    count = Count()
    count.add(30, tokens(NATIVE))
    if output_px >= 2048:
        count.add(16, tokens(2048))
    if output_px >= 4096:
        count.add(10, tokens(4096))
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", default="2048,4096", help="square output sides in pixels")
    parser.add_argument("--input", type=int, default=1024, help="Uprez's input side (DemoFusion/HiFlow generate)")
    args = parser.parse_args(argv)
    rows = ["| output | method | transformer passes | tokens per output MP | largest pass (tokens) |",
            "|---|---|---:|---:|---:|"]
    for output in (int(o) for o in args.outputs.split(",")):
        megapixels = output * output / 2**20
        for name, count in (("Uprez (defaults)", uprez(args.input, output)), ("DemoFusion", demofusion(output)),
                            ("HiFlow", hiflow(output))):
            rows.append(f"| {output}² | {name} | {count.passes} | {count.tokens / megapixels:,.0f} | "
                        f"{count.largest:,} |")
    print(f"Uprez input: {args.input}² px; FLUX.1-dev geometry. DemoFusion and HiFlow generate from text, so "
          "their passes include the base image.\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Side-by-side crops at 1:1 for the built-in model's card: Lanczos | v1 | v2 faithful | v2 detailed (| HR).

    python bench/builtin_crops.py [--model builtin|FOLDER] [--v1 runs/v1] [--out docs/builtin]

Three sheets, each the same output region of every method, at 1:1 (no enlargement): the bundled sample.jpg
upscaled 2x as it is (a web JPEG with its 8x8 block grid: what `scripts/demo.sh` runs), and the two most
detailed eval photos, bicubic-downscaled 2x and then saved as JPEG quality 60 (the bench's jpeg60 input),
upscaled 2x, with the original beside them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from bench.quality import V1_FOLDER, busiest_window, centre_crop, detail, upscaler  # noqa: E402
from engine.builtin import data, degradations  # noqa: E402

SAMPLE = ROOT / "engine" / "data" / "sample.jpg"
SAMPLE_BOX = (176, 236, 304, 364)  # (left, top, right, bottom) of the input: face, glasses, wrinkles
SIDE = 256  # output pixels per crop


def sheet(panels: dict[str, np.ndarray], y: int, x: int, side: int = SIDE) -> Image.Image:
    tiles = [Image.fromarray(np.round(p[y : y + side, x : x + side] * 255.0).astype(np.uint8)) for p in panels.values()]
    gap, label = 4, 14
    out = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), side + label), "white")
    draw = ImageDraw.Draw(out)
    left = 0
    for name, tile in zip(panels, tiles, strict=True):
        out.paste(tile, (left, label))
        draw.text((left + 2, 1), name, fill="black")
        left += tile.width + gap
    return out


def methods(model: str, v1: Path) -> dict[str, object]:
    return {"Lanczos": upscaler("lanczos"), "v1": upscaler("v1", model, v1),
            "v2 faithful": upscaler("builtin", model), "v2 detailed": upscaler("detailed", model)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin", help="v2 weights: 'builtin' or a model folder")
    parser.add_argument("--v1", type=Path, default=V1_FOLDER, help="folder with the v1 weights")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "builtin")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = methods(args.model, args.v1)

    with Image.open(SAMPLE) as image:
        lr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    left, top, right, bottom = SAMPLE_BOX
    panels = {name: run(lr[top:bottom, left:right], 2) for name, run in runs.items()}
    sheet(panels, 0, 0).save(args.out / "sample-x2.png")
    print(args.out / "sample-x2.png")

    photos = data.eval_photos()
    images = {photo.name: centre_crop(data.load(photo), 512) for photo in photos}
    for name in sorted(images, key=lambda n: -float(detail(images[n]).mean()))[:2]:
        hr, clean = data.eval_pair(images[name], 2)
        y, x = busiest_window(hr, SIDE)
        y, x = y // 16 * 16, x // 16 * 16  # keep the LR's JPEG grid where it falls in the full image
        hr = hr[y : y + SIDE, x : x + SIDE]
        lr = degradations.jpeg(clean[y // 2 : (y + SIDE) // 2, x // 2 : (x + SIDE) // 2], 60)
        panels = {name: run(lr, 2) for name, run in runs.items()}
        panels["original"] = hr
        path = args.out / f"{name}-jpeg60-x2.png"
        sheet(panels, 0, 0).save(path)
        print(path)


if __name__ == "__main__":
    main()

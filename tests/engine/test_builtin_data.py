"""The built-in model's data: the pinned metrics, the degradation, the eval pair, the photo list and its split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from needs import needs
from PIL import Image

from engine.builtin import data

DEBIAN_INSTALLED = all(root.is_dir() for root in data.ROOTS.values())
DEBIAN_INSTALLED = DEBIAN_INSTALLED and all(p.path.is_file() for p in data.photos() if p.package in data.ROOTS)
needs_debian = needs(DEBIAN_INSTALLED, "photos", "apt-get install mate-backgrounds plasma-workspace-wallpapers "
                     "opencv-doc lomiri-wallpapers-16.04 lomiri-wallpapers-20.04")
EVAL_NAMES = {  # the split is part of the benchmark: changing it makes old numbers incomparable
    "Blinds", "YellowFlower", "DarkestHour", "Path", "aloeL", "ela_original", "squirrel_cls", "astronaut", "retina",
}


def photo_like(seed: int, height: int = 48, width: int = 40) -> np.ndarray:
    """Smooth random colour image in [0, 1]: blurred noise, so downscales and SSIM behave as on photos."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    return data._blur(noise, 1.5)


# --- metrics ---


def test_psnr_of_a_known_mse():
    a = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert data.psnr(a, a + 10) == pytest.approx(10 * math.log10(255**2 / 100))
    assert data.psnr(a, a) == math.inf
    assert data.psnr(a.astype(np.float32) / 255, a) == math.inf  # floats are rounded to 8 bits first


def test_ssim_of_an_image_with_itself_is_one():
    x = photo_like(0)
    assert data.ssim(x, x) == pytest.approx(1.0)
    assert data.ssim(np.zeros((16, 16, 3)), np.zeros((16, 16, 3))) == pytest.approx(1.0)


def test_ssim_falls_as_noise_grows_and_is_symmetric():
    x = photo_like(1)
    rng = np.random.default_rng(2)
    scores = [data.ssim(x, x + rng.normal(0, sigma, x.shape)) for sigma in (0.01, 0.03, 0.1, 0.3)]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)) and scores[0] < 1.0
    y = x + rng.normal(0, 0.05, x.shape)
    assert data.ssim(x, y) == pytest.approx(data.ssim(y, x))


def test_ssim_matches_a_direct_windowed_sum():
    a, b = photo_like(3, 14, 13), photo_like(4, 14, 13)
    x, y = (np.round(v * 255) @ np.array([0.299, 0.587, 0.114]) for v in (a, b))
    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy, cov = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum(), (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert data.ssim(a, b) == pytest.approx(np.mean(values), abs=1e-9)


def test_metrics_refuse_mismatched_images():
    with pytest.raises(ValueError, match="shape"):
        data.psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="11x11"):
        data.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


# --- degradation and the eval pair ---


@pytest.mark.parametrize(("height", "width", "factor"), [(48, 40, 2), (67, 50, 2), (64, 64, 4), (31, 45, 3)])
def test_degrade_gives_an_8_bit_float_image_of_the_low_res_size(height, width, factor):
    for seed in range(6):
        lr = data.degrade(photo_like(seed, height, width), np.random.default_rng(seed), factor)
        assert lr.shape == (height // factor, width // factor, 3) and lr.dtype == np.float32
        assert lr.min() >= 0.0 and lr.max() <= 1.0
        np.testing.assert_array_equal(np.round(lr * 255) / 255, lr)


def test_degrade_is_deterministic_for_a_seed_and_varies_across_seeds():
    hr = photo_like(5)
    first = [data.degrade(hr, np.random.default_rng(seed)) for seed in range(8)]
    again = [data.degrade(hr, np.random.default_rng(seed)) for seed in range(8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({a.tobytes() for a in first}) > 4


def test_degrade_is_sometimes_exactly_the_eval_input():
    hr = photo_like(6, 32, 32)
    clean = data.eval_pair(hr, 2)[1]
    same = sum(np.array_equal(data.degrade(hr, np.random.default_rng(seed)), clean) for seed in range(60))
    expected = data.CLEAN_SHARE * 60
    assert expected - 15 <= same <= expected + 15  # binomial sd ~3.9: about 4 sd either side


def test_eval_pair_crops_hr_to_the_factor_and_downscales_it():
    hr, lr = data.eval_pair(photo_like(7, 101, 67), 4)
    assert hr.shape == (100, 64, 3) and lr.shape == (25, 16, 3)
    assert hr.dtype == lr.dtype == np.float32
    flat_hr, flat_lr = data.eval_pair(np.full((20, 20, 3), 0.5, np.float32), 2)
    np.testing.assert_allclose(flat_lr, flat_hr[:10, :10], atol=1 / 255)
    with pytest.raises(ValueError, match="smaller than the factor"):
        data.eval_pair(np.zeros((3, 3, 3), np.float32), 4)


# --- photos and split ---


def test_split_is_fixed_has_no_overlap_and_mixes_every_source():
    photos = data.photos()
    assert photos == data.photos()
    names = [p.name for p in photos]
    assert len(set(names)) == len(names)
    train, evals = {p.name for p in data.train_photos()}, {p.name for p in data.eval_photos()}
    validation = {p.name for p in data.validation_photos()}
    assert not train & evals and not train & validation and not validation & evals
    assert train | evals | validation == set(names)
    assert evals == EVAL_NAMES  # v2's additions left the eval split as v1 reported it
    assert validation == {"Picture_1A", "free", "picosdeeuropa"}  # only photos v1 never trained on
    v1_sources = {data.MATE, data.PLASMA, data.OPENCV, data.SKIMAGE}
    assert {p.package for p in data.eval_photos()} == v1_sources
    assert {p.package for p in data.train_photos()} == v1_sources | {data.LOMIRI16, data.LOMIRI20}


def test_every_photo_has_a_licence_and_the_manifest_is_current():
    assert all(p.licence.strip() and p.split in ("train", "val", "eval") for p in data.photos())
    written = (Path(data.__file__).with_name("MANIFEST.md")).read_text(encoding="utf-8")
    assert written == data.manifest(), "run: python -m engine.builtin.data --manifest"


def test_skimage_photos_already_cached_are_not_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("UPREZ_DATA_DIR", str(tmp_path))
    folder = tmp_path / "skimage-photos"
    folder.mkdir()
    for name in data.SKIMAGE_SHA256:
        (folder / name).write_bytes(b"")
    monkeypatch.setattr(data.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert data.ensure_skimage_photos() == folder
    assert all(p.path.parent == folder for p in data.photos() if p.package == data.SKIMAGE)


def test_a_missing_debian_photo_names_the_package_to_install(tmp_path):
    photo = data.Photo("gone", data.MATE, "GPL-2+", tmp_path / "gone.jpg", "train")
    with pytest.raises(FileNotFoundError, match="apt-get install mate-backgrounds"):
        data.load(photo)


@needs_debian
def test_debian_photos_are_present_colour_and_large_enough():
    for photo in data.photos():
        if photo.package == data.SKIMAGE:
            continue
        with Image.open(photo.path) as image:  # header only: cheap
            assert image.mode in ("RGB", "RGBA", "L") and min(image.size) >= 256, photo.name  # L: Grey, a B&W photo
            assert photo.split == "train" or min(image.size) >= 400, photo.name
    image = data.load(data.photos()[0], max_side=300)
    assert image.dtype == np.float32 and image.shape[2] == 3 and max(image.shape[:2]) == 300
    assert image.min() >= 0.0 and image.max() <= 1.0


@needs_debian
def test_lomiri_licences_match_the_packages_copyright_file():
    stanzas = Path("/usr/share/doc/lomiri-wallpapers-16.04/copyright").read_text(encoding="utf-8").split("\n\n")
    licence_of = {}
    for stanza in stanzas:
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if "Files" in fields and "License" in fields:
            licence_of[fields["Files"].split("/")[-1]] = fields["License"]
    lomiri = [p for p in data.photos() if p.package in (data.LOMIRI16, data.LOMIRI20)]
    assert len(lomiri) == 15
    for photo in lomiri:
        assert licence_of[photo.path.name] == photo.licence, photo.name


@needs_debian
def test_plasma_licences_match_each_wallpapers_metadata():
    for photo in data.photos():
        if photo.package == data.PLASMA:
            metadata = json.loads((photo.path.parents[2] / "metadata.json").read_text(encoding="utf-8"))
            assert metadata["KPlugin"]["License"] == photo.licence, photo.name

"""Training and evaluation photos for the built-in model: a curated, licence-checked set, its fixed
train/eval split, the Real-ESRGAN-style degradation the model learns to undo, and the pinned metrics.

    python -m engine.builtin.data --summary      # photos per split and source
    python -m engine.builtin.data --manifest     # rewrite engine/builtin/MANIFEST.md

Sources are Debian packages (`apt-get install mate-backgrounds plasma-workspace-wallpapers opencv-doc
lomiri-wallpapers-16.04 lomiri-wallpapers-20.04`) and six photos from the scikit-image wheel, fetched
with pip into a cache folder on first use. The list below is an allow-list chosen by eye: a package update
that adds wallpapers never changes the split.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.builtin import degradations

MATE, PLASMA, OPENCV, SKIMAGE = "mate-backgrounds", "plasma-workspace-wallpapers", "opencv-doc", "scikit-image"
LOMIRI16, LOMIRI20 = "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"
ROOTS = {
    MATE: Path("/usr/share/backgrounds/mate"),
    LOMIRI16: Path("/usr/share/backgrounds"),
    LOMIRI20: Path("/usr/share/backgrounds"),
    PLASMA: Path("/usr/share/wallpapers"),
    OPENCV: Path("/usr/share/doc/opencv-doc/examples/data"),
}
OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause"  # Debian's copyright file, "Files: *"
SKIMAGE_WHEEL = "scikit-image==0.26.0"  # any platform's wheel holds the same photos; the hashes below pin them

# (name, package, file under the package's root, licence, author). Licences: mate from
# /usr/share/doc/mate-backgrounds/copyright, plasma from each wallpaper's metadata.json, opencv from
# /usr/share/doc/opencv-doc/copyright, scikit-image from the docstrings in skimage/data/_fetchers.py.
_CURATED: tuple[tuple[str, str, str, str, str], ...] = (
    ("Aqua", MATE, "nature/Aqua.jpg", "GPL-2+", "Charles Barbin"),
    ("Blinds", MATE, "nature/Blinds.jpg", "GPL-2+", "Lennart Poettering, Andrea Cimitan"),
    ("Dune", MATE, "nature/Dune.jpg", "GPL-2+", "Marco Cogoni, Hylke Bons"),
    ("FreshFlower", MATE, "nature/FreshFlower.jpg", "GPL-2+", "Jens Ansorg"),
    ("Garden", MATE, "nature/Garden.jpg", "GPL-2+", "Charles Barbin"),
    ("GreenMeadow", MATE, "nature/GreenMeadow.jpg", "GPL-2+", "Timothy Schellhase, Lapo Calamandrei"),
    ("LadyBird", MATE, "nature/LadyBird.jpg", "GPL-2+", "Charles Barbin"),
    ("RainDrops", MATE, "nature/RainDrops.jpg", "GPL-2+", "blackcombwhistler07"),
    ("Storm", MATE, "nature/Storm.jpg", "GPL-2+", "Sergey Nazarov"),
    ("TwoWings", MATE, "nature/TwoWings.jpg", "GPL-2+", "Charles Barbin, Hylke Bons"),
    ("Wood", MATE, "nature/Wood.jpg", "GPL-2+", "Jean-François Fortin Tam"),
    ("YellowFlower", MATE, "nature/YellowFlower.jpg", "GPL-2+", "Charles Barbin"),
    # Plasma ships each wallpaper at many sizes; only the largest JPEG is used (the rest are copies).
    ("BytheWater", PLASMA, "BytheWater/contents/images/2560x1600.jpg", "LGPLv3", "Maciej Wiklo"),
    ("ColdRipple", PLASMA, "ColdRipple/contents/images/2560x1600.jpg", "LGPLv3", "Risto Saukonpää"),
    ("ColorfulCups", PLASMA, "ColorfulCups/contents/images/2560x1600.jpg", "LGPLv3", "Dmitri Popov"),
    ("DarkestHour", PLASMA, "DarkestHour/contents/images/2560x1600.jpg", "LGPLv3", "Risto Saukonpää"),
    ("EveningGlow", PLASMA, "EveningGlow/contents/images/2560x1600.jpg", "LGPLv3", "Ian Hex"),
    ("FallenLeaf", PLASMA, "FallenLeaf/contents/images/2560x1600.jpg", "LGPLv3", "Martin Klapetek"),
    ("Grey", PLASMA, "Grey/contents/images/2560x1600.jpg", "LGPLv3", "Sigi Sagi"),
    ("Kite", PLASMA, "Kite/contents/images/2560x1600.jpg", "LGPLv3", "Risto Saukonpää"),
    ("OneStandsOut", PLASMA, "OneStandsOut/contents/images/2560x1600.jpg", "LGPLv3", "Risto Saukonpää"),
    ("Path", PLASMA, "Path/contents/images/2560x1600.jpg", "LGPLv3", "Risto Saukonpää"),
    ("summer_1am", PLASMA, "summer_1am/contents/images/2560x1600.jpg", "LGPLv3", "Risto Saukonpää"),
    # One view of each stereo/sequence pair (aloeR, graf3, leuvenB, ... would leak across the split).
    ("aero1", OPENCV, "aero1.jpg", OPENCV_LICENCE, ""),
    ("aloeL", OPENCV, "aloeL.jpg", OPENCV_LICENCE, ""),
    ("apple", OPENCV, "apple.jpg", OPENCV_LICENCE, ""),
    ("board", OPENCV, "board.jpg", OPENCV_LICENCE, ""),
    ("building", OPENCV, "building.jpg", OPENCV_LICENCE, ""),
    ("butterfly", OPENCV, "butterfly.jpg", OPENCV_LICENCE, ""),
    ("chicky_512", OPENCV, "chicky_512.png", OPENCV_LICENCE, ""),
    ("ela_original", OPENCV, "ela_original.jpg", OPENCV_LICENCE, ""),
    ("fruits", OPENCV, "fruits.jpg", OPENCV_LICENCE, ""),
    ("graf1", OPENCV, "graf1.png", OPENCV_LICENCE, ""),
    ("home", OPENCV, "home.jpg", OPENCV_LICENCE, ""),
    ("leuvenA", OPENCV, "leuvenA.jpg", OPENCV_LICENCE, ""),
    ("orange", OPENCV, "orange.jpg", OPENCV_LICENCE, ""),
    ("rubberwhale1", OPENCV, "rubberwhale1.png", OPENCV_LICENCE, ""),
    ("smarties", OPENCV, "smarties.png", OPENCV_LICENCE, ""),
    ("squirrel_cls", OPENCV, "squirrel_cls.jpg", OPENCV_LICENCE, ""),
    ("stuff", OPENCV, "stuff.jpg", OPENCV_LICENCE, ""),
    ("astronaut", SKIMAGE, "astronaut.png", "public domain (NASA)", "NASA"),
    ("chelsea", SKIMAGE, "chelsea.png", "CC0-1.0", "Stefan van der Walt"),
    ("coffee", SKIMAGE, "coffee.png", "CC0-1.0", "Rachel Michetti"),
    ("hubble_deep_field", SKIMAGE, "hubble_deep_field.jpg", "public domain (NASA)", "NASA"),
    ("retina", SKIMAGE, "retina.jpg", "CC0-1.0", "Mikael Häggström"),
    ("rocket", SKIMAGE, "rocket.jpg", "public domain (SpaceX)", "SpaceX"),
    # Added for v2 (issue 15): never in eval, so v1's eval numbers stay comparable; 3 of them are validation.
    # Licences from /usr/share/doc/lomiri-wallpapers-16.04/copyright (one stanza per file, both packages).
    ("Bridge", LOMIRI16, "Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0", "Sander Klootwijk"),
    ("Dragonfly", LOMIRI16, "Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", "Bolly"),
    ("Picture_0B", LOMIRI16, "Picture_0B_by_freespace.jpg", "CC-BY-4.0", "Trevor \"Freespace\""),
    ("Picture_1A", LOMIRI16, "Picture_1A_by_freespace.jpg", "CC-BY-4.0", "Trevor \"Freespace\""),
    ("Wine", LOMIRI16, "Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0", "Jakub Mede"),
    ("aitzgorri", LOMIRI16, "aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
    ("free", LOMIRI16, "free_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich"),
    ("friends", LOMIRI16, "friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
    ("greentock", LOMIRI16, "greentock_by_Peter_Nerlich.jpg", "CC-BY-SA-4.0", "Peter Nerlich"),
    ("life", LOMIRI16, "life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
    ("picosdeeuropa", LOMIRI16, "picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
    ("seeding", LOMIRI16, "seeding_by_Clements_Engelhardt.jpg", "CC0-1.0", "Clemens Engelhardt"),
    ("sunset", LOMIRI16, "sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
    ("umang", LOMIRI16, "umang_by_Abhishek_Mudgal.jpg", "CC-BY-4.0", "Abhishek Mudgal"),
    ("Kleiber", LOMIRI20, "Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0", "Lukas Baubkus"),
)
SKIMAGE_SHA256 = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "retina.jpg": "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
}
VALIDATION_COUNT = 3
# Shorter side under 400 px: fine to train on, too small to judge an upscale by.
_TRAIN_ONLY = frozenset({"butterfly", "chelsea", "home", "rubberwhale1", "smarties"})
EXCLUDED = {  # what the sources hold beyond _CURATED, and why it is left out (for the manifest)
    MATE: [
        ("abstract/* (Elephants, Flow, Gulp, Silk, Spring, Waves, Arc-Colors)", "abstract art, not photos"),
        ("desktop/* (GreenTraditional, Float-into-MATE, Stripes, MATE-Stripes-*, Ubuntu-Mate-*)",
         "logos, stripes, gradients"),
    ],
    PLASMA: [
        ("Altai, Canopee, Cascade, Cluster, Elarun, Flow, Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal, "
         "PastelHills, Patak, Shell, Volna", "digital art / renders"),
        ("Autumn, FlyingKonqui, SafeLanding", "illustrations"),
        ("the other sizes of each kept wallpaper", "copies of the same picture"),
    ],
    OPENCV: [
        ("aero3, aloeR, graf3, leuvenB, rubberwhale2, ela_modified, left, right",
         "second view / edited copy of a kept photo (left/right also: dark, text on book covers)"),
        ("baboon", "USC-SIPI test image, copyright status unknown"),
        ("messi5", "press photo of a real person, provenance unclear"),
        ("starry_night", "a painting"),
        ("sudoku, text_defocus, text_motion, imageTextN, imageTextR, licenseplate_motion, notes",
         "text (licenseplate_motion is also motion-blurred)"),
        ("Blender_Suzanne1/2, HappyFish, LinuxLogo, WindowsLogo, opencv-logo*, cards, detect_blob, gradient, ml, "
         "pic1-6, pca_test1, chessboard, templ, tmpl, mask, digits", "renders, logos, drawings, charts, masks"),
        ("left01-14, right01-14, basketball1/2, box, box_in_scene, ellipses, blox, aloeGT",
         "greyscale files (calibration boards, disparity map, renders)"),
    ],
    SKIMAGE: [("every other file in skimage/data", "not in the allowed six (greyscale, synthetic or text)")],
    LOMIRI16: [("analogpattern_by_Peter_Nerlich", "an abstract texture, not a scene")],
    LOMIRI20: [("Fossa_by_Jasper_Roks, Painting-Colors_by__herobrine7gamer", "digital art / renders"),
               ("Infinite-Sea_by_Aury88", "a composite (Milky Way over a sea), edited beyond a photo")],
    "lomiri-wallpapers, ukui-wallpapers": [("all", "renders, logos and illustrations (looked at, none a photo)")],
}
CLEAN_SHARE = 0.5  # share of training pairs degraded exactly as the clean evaluation input is
EVAL_JPEG_SHARE = 0.3  # share that is the clean input then one JPEG (quality 30-95): the eval's JPEG inputs
EVAL_JPEG_QUALITY = (30, 95)
# The rest go through the second-order pipeline of `degradations` (blur, resize, noise, JPEG, twice).
# Measured on the validation split (bench/quality.py --split val, Picture_1A and free, x2): the first 350
# steps ran with 0.3 clean / 0.2 JPEG / 0.5 second order; at step 250 the block grid fell (jpeg60 1.28 ->
# 1.11 against v1) but clean PSNR lost 1.3 dB to v1 on Picture_1A, so the rest ran with this mix.


@dataclass(frozen=True)
class Photo:
    """One photo of the dataset; `split` is "train", "val" (choosing recipes) or "eval" (reported), fixed by
    its name."""

    name: str
    package: str
    licence: str
    path: Path
    split: str


def _cache_dir() -> Path:
    """$UPREZ_DATA_DIR, else platformdirs' user cache dir for "uprez"."""
    if os.environ.get("UPREZ_DATA_DIR"):
        return Path(os.environ["UPREZ_DATA_DIR"]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("uprez"))


def _skimage_dir() -> Path:
    return _cache_dir() / "skimage-photos"


def _rank(name: str) -> str:
    return hashlib.sha256(f"uprez-split-v1:{name}".encode()).hexdigest()


def _eval_names() -> frozenset[str]:
    """Per source, the max(2, n/5) eval-worthy photos that hash first: both splits mix every source."""
    chosen: set[str] = set()
    for package in (MATE, PLASMA, OPENCV, SKIMAGE):
        names = sorted((name for name, pkg, *_ in _CURATED if pkg == package), key=_rank)
        want = max(2, round(len(names) / 5))
        chosen.update([name for name in names if name not in _TRAIN_ONLY][:want])
    return frozenset(chosen)


def _validation_names() -> frozenset[str]:
    """The first VALIDATION_COUNT photos in hash order among the v2 additions: for choosing recipes. Only
    photos v1 never saw, so a fine-tune from v1 cannot have memorised them."""
    names = sorted((name for name, pkg, *_ in _CURATED if pkg in (LOMIRI16, LOMIRI20)), key=_rank)
    return frozenset(names[:VALIDATION_COUNT])


def photos() -> list[Photo]:
    """All curated photos with their split, in a fixed order; the files need not exist yet (see `load`)."""
    evals, validation = _eval_names(), _validation_names()
    return [
        Photo(name, package, licence, (_skimage_dir() if package == SKIMAGE else ROOTS[package]) / file,
              "eval" if name in evals else "val" if name in validation else "train")
        for name, package, file, licence, _ in _CURATED
    ]


def train_photos() -> list[Photo]:
    return [photo for photo in photos() if photo.split == "train"]


def eval_photos() -> list[Photo]:
    return [photo for photo in photos() if photo.split == "eval"]


def validation_photos() -> list[Photo]:
    return [photo for photo in photos() if photo.split == "val"]


def authors() -> dict[str, str]:
    """Photo name -> author, where the source names one."""
    return {name: author for name, _, _, _, author in _CURATED}


def ensure_skimage_photos() -> Path:
    """Fetch the six scikit-image photos into the cache folder (pip download of the wheel) unless present."""
    folder = _skimage_dir()
    missing = [name for name in SKIMAGE_SHA256 if not (folder / name).is_file()]
    if not missing:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # A pinned wheel for one fixed platform: the same bytes whatever machine asks.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
                   "-d", tmp, SKIMAGE_WHEEL]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("scikit_image-*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(f"could not fetch the scikit-image photos ({' '.join(command)}): "
                               f"{result.stderr.strip()[-500:]}; check the network, or unzip skimage/data/"
                               f"{{{','.join(SKIMAGE_SHA256)}}} from that wheel into {folder}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in missing:
                content = wheel.read(f"skimage/data/{name}")
                if hashlib.sha256(content).hexdigest() != SKIMAGE_SHA256[name]:
                    raise RuntimeError(f"skimage/data/{name} in {wheels[0].name} is not the pinned photo")
                partial = folder / f".{name}.part"
                partial.write_bytes(content)
                partial.replace(folder / name)  # never leave half a file under the real name
    return folder


def load(photo: Photo, max_side: int = 1600) -> np.ndarray:
    """RGB float32 in [0, 1]; area-downscaled so max(H, W) <= max_side, which also averages away JPEG noise."""
    if photo.package == SKIMAGE and not photo.path.is_file():
        ensure_skimage_photos()
    if not photo.path.is_file():
        raise FileNotFoundError(f"{photo.path} is missing; install it with: sudo apt-get install {photo.package}")
    with Image.open(photo.path) as image:
        image = image.convert("RGB")
        width, height = image.size
        if max(width, height) > max_side:
            ratio = max_side / max(width, height)
            size = (min(max_side, round(width * ratio)), min(max_side, round(height * ratio)))
            image = image.resize(size, Image.Resampling.BOX)
        return np.asarray(image, dtype=np.float32) / 255.0


# --- degradation and the evaluation pair ---------------------------------------------------------------------


def _resize(values: np.ndarray, size: tuple[int, int], kernel: Image.Resampling) -> np.ndarray:
    """Resize float (H, W, 3) to size = (W, H) channel by channel in float precision, clipped to [0, 1]."""
    planes = [Image.fromarray(np.ascontiguousarray(values[:, :, c], dtype=np.float32), mode="F").resize(size, kernel)
              for c in range(values.shape[2])]
    return np.stack([np.asarray(plane) for plane in planes], axis=2).clip(0.0, 1.0)


def _quantise(values: np.ndarray) -> np.ndarray:
    """Round to the 8-bit levels a real input file has."""
    return (np.round(values.clip(0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _crop_to_multiple(hr: np.ndarray, factor: int) -> np.ndarray:
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a whole number >= 1, got {factor!r}")
    height, width = hr.shape[0] // factor * factor, hr.shape[1] // factor * factor
    if height == 0 or width == 0:
        raise ValueError(f"an image of {hr.shape[1]}x{hr.shape[0]} is smaller than the factor {factor}")
    return hr[:height, :width]


def _correlate(values: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation over axes 0 and 1, 'valid' region only."""
    n = len(taps)
    rows = sum(t * values[i : i + values.shape[0] - n + 1] for i, t in enumerate(taps))
    return sum(t * rows[:, i : i + rows.shape[1] - n + 1] for i, t in enumerate(taps))


def _gaussian_taps(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _blur(values: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma))
    padded = np.pad(values, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    return _correlate(padded, _gaussian_taps(sigma, radius).astype(np.float32)).astype(np.float32)


def degrade(hr: np.ndarray, rng: np.random.Generator, factor: int = 2) -> np.ndarray:
    """A low-res copy (H//factor, W//factor) of `hr` through a random practical degradation: the clean eval
    input (CLEAN_SHARE), that input JPEG-compressed (EVAL_JPEG_SHARE), else Real-ESRGAN's second-order
    pipeline (`degradations.second_order`). It pairs with hr[:H//f*f, :W//f*f]."""
    draw = rng.random()
    if draw < CLEAN_SHARE + EVAL_JPEG_SHARE:
        lr = eval_pair(hr, factor)[1]  # the evaluation's own input
        if draw < CLEAN_SHARE:
            return lr
        return degradations.jpeg(lr, int(rng.integers(EVAL_JPEG_QUALITY[0], EVAL_JPEG_QUALITY[1] + 1)))
    return degradations.second_order(_crop_to_multiple(np.asarray(hr, dtype=np.float32), factor), rng, factor)


def eval_pair(hr: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The pinned evaluation input: (HR cropped to a multiple of factor, its PIL-bicubic downscale), both
    rounded to 8-bit levels so the pair can be written as PNG and rebuilt anywhere."""
    hr = _quantise(_crop_to_multiple(np.asarray(hr, dtype=np.float32), factor))
    size = (hr.shape[1] // factor, hr.shape[0] // factor)
    return hr, _quantise(_resize(hr, size, Image.Resampling.BICUBIC))


# --- metrics (pinned: compare only numbers made by these two functions) -----------------------------------------


def _as_255(image: np.ndarray) -> np.ndarray:
    """uint8, or float in [0, 1] rounded to uint8 levels, as float64 in [0, 255]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64)
    return np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB on RGB rounded to 8 bits, whole image, peak 255; inf for identical images."""
    x, y = _as_255(a), _as_255(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004, eq. 13) on BT.601 luma in [0, 255]: 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, mean over the 'valid' region."""
    x, y = _as_255(a), _as_255(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    if x.ndim == 3:
        luma = np.array([0.299, 0.587, 0.114])
        x, y = x[:, :, :3] @ luma, y[:, :, :3] @ luma
    if min(x.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels, got {x.shape[1]}x{x.shape[0]}")
    taps = _gaussian_taps(1.5, 5)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mx, my = _correlate(x, taps), _correlate(y, taps)
    vx, vy = _correlate(x * x, taps) - mx * mx, _correlate(y * y, taps) - my * my
    cov = _correlate(x * y, taps) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


# --- manifest and summary ---------------------------------------------------------------------------------------


def manifest() -> str:
    """MANIFEST.md: every photo with its source, licence, author and split, then what was left out."""
    by = authors()
    lines = [
        "# Built-in model photos",
        "",
        "Written by `python -m engine.builtin.data --manifest`; do not edit by hand. Photographs only, chosen",
        "by eye from the sources below; the split is per photo and fixed by a hash of its name (per source,",
        "the max(2, n/5) first in hash order that are at least 400 px on the short side go to eval; the",
        "v2 additions from the Lomiri packages never go to eval, and the first 3 of them in hash order are the",
        "validation split used to choose recipes). The model never trains on an eval or validation photo.",
        "",
        "| name | source package | licence | author | split | file |",
        "|---|---|---|---|---|---|",
    ]
    for photo in photos():
        where = f"skimage/data/{photo.path.name} ({SKIMAGE_WHEEL} wheel)" if photo.package == SKIMAGE else photo.path
        lines.append(f"| {photo.name} | {photo.package} | {photo.licence} | {by[photo.name] or '—'} "
                     f"| {photo.split} | `{where}` |")
    lines += ["", "## Left out", "", "| source package | files | why |", "|---|---|---|"]
    lines += [f"| {package} | {files} | {why} |" for package, rows in EXCLUDED.items() for files, why in rows]
    lines += [
        "",
        "## Licence sources",
        "",
        f"- {MATE}: `/usr/share/doc/mate-backgrounds/copyright` (per-file `Files:` stanzas).",
        f"- {PLASMA}: each wallpaper's `metadata.json` (`KPlugin.License`, `Authors`);",
        "  the package as a whole: `/usr/share/doc/plasma-workspace-wallpapers/copyright`.",
        f"- {OPENCV}: `/usr/share/doc/opencv-doc/copyright`, stanza `Files: *` ({OPENCV_LICENCE}).",
        f"- {SKIMAGE}: the docstrings of `skimage/data/_fetchers.py` in the same wheel; files pinned by SHA-256.",
        f"- {LOMIRI16}, {LOMIRI20}: `/usr/share/doc/lomiri-wallpapers-16.04/copyright` (one `Files:` stanza per",
        "  photo, author and licence; the 20.04 package's copyright file is the same).",
        "",
    ]
    return "\n".join(lines)


def summary() -> str:
    counts = Counter((photo.package, photo.split) for photo in photos())
    rows = [f"{'source':<30} {'train':>5} {'val':>5} {'eval':>5}"]
    rows += [f"{p:<30} {counts[p, 'train']:>5} {counts[p, 'val']:>5} {counts[p, 'eval']:>5}"
             for p in (MATE, PLASMA, OPENCV, SKIMAGE, LOMIRI16, LOMIRI20)]
    rows.append(f"{'total':<30} {len(train_photos()):>5} {len(validation_photos()):>5} {len(eval_photos()):>5}")
    rows.append("val: " + ", ".join(photo.name for photo in validation_photos()))
    rows.append("eval: " + ", ".join(photo.name for photo in eval_photos()))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", action="store_true", help="rewrite engine/builtin/MANIFEST.md")
    parser.add_argument("--summary", action="store_true", help="print photos per split and source")
    args = parser.parse_args(argv)
    if args.manifest:
        path = Path(__file__).with_name("MANIFEST.md")
        path.write_text(manifest(), encoding="utf-8")
        print(f"wrote {path}")
    if args.summary or not args.manifest:
        print(summary())


if __name__ == "__main__":
    main()

"""Files and Qt images <-> Picture: depth, alpha and channel layout survive; nothing is written over."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import png
import pytest
import tifffile
from PIL import Image

from ui.imageio import BadImage, Picture, from_qimage, from_raw, load_file, save_file, to_qimage

RNG = np.random.default_rng(7)


def random_pixels(channels: int, dtype=np.uint8, size=(12, 17)) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    return RNG.integers(0, top + 1, size + (channels,), dtype=np.int64).astype(dtype)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
@pytest.mark.parametrize("channels", [3, 4])
def test_8bit_round_trip(tmp_path, suffix, channels):
    pixels = random_pixels(channels)
    if suffix == ".webp":  # lossy: compare a smooth picture, which it keeps well
        ramp = np.linspace(0, 255, 12 * 17 * channels).reshape(12, 17, channels)
        pixels = ramp.astype(np.uint8)
    path = tmp_path / f"p{suffix}"
    save_file(Picture(pixels), path)
    loaded = load_file(path)
    assert loaded.depth == 8 and loaded.has_alpha == (channels == 4)
    if suffix == ".webp":  # lossy at quality 95
        assert np.abs(loaded.pixels.astype(int) - pixels).mean() < 8
    else:
        assert np.array_equal(loaded.pixels, pixels)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_round_trip(tmp_path, suffix, channels):
    pixels = random_pixels(channels, np.uint16)
    path = tmp_path / f"p{suffix}"
    save_file(Picture(pixels), path)
    loaded = load_file(path)
    assert loaded.depth == 16 and np.array_equal(loaded.pixels, pixels)


def test_jpeg_drops_alpha_and_depth(tmp_path):
    path = tmp_path / "p.jpg"
    save_file(Picture(random_pixels(4, np.uint16)), path)
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == (17, 12)


def test_grey_and_float_inputs_become_rgb(tmp_path):
    grey = random_pixels(1)[:, :, 0]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    loaded = load_file(tmp_path / "grey.png")
    assert loaded.pixels.shape == (12, 17, 3) and np.array_equal(loaded.pixels[:, :, 1], grey)
    grey16 = random_pixels(1, np.uint16)[:, :, 0]
    png.from_array(grey16, "L;16").save(str(tmp_path / "grey16.png"))
    assert np.array_equal(load_file(tmp_path / "grey16.png").pixels[:, :, 2], grey16)
    tifffile.imwrite(str(tmp_path / "float.tif"), np.full((4, 5, 3), 0.5, np.float32), photometric="rgb")
    loaded = load_file(tmp_path / "float.tif")
    assert loaded.depth == 16 and loaded.pixels[0, 0, 0] == 32768


def test_bad_files_raise_bad_image(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(BadImage, match="text.png"):
        load_file(tmp_path / "text.png")
    with pytest.raises(BadImage, match="does not exist"):
        load_file(tmp_path / "none.png")
    with pytest.raises(BadImage, match="cannot save as .gif"):
        save_file(Picture(random_pixels(3)), tmp_path / "x.gif")


def test_save_never_overwrites_unless_told(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        save_file(Picture(random_pixels(3)), path)
    assert path.read_bytes() == b"precious"
    save_file(Picture(random_pixels(3)), path, overwrite=True)
    assert load_file(path).width == 17
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporary file left behind


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_saved_files_get_the_usual_mode(tmp_path, suffix):
    """Not the 0600 of the temporary file: 0666 less the umask when new, the replaced file's mode otherwise."""
    path = tmp_path / f"p{suffix}"
    previous = os.umask(0o027)
    try:
        save_file(Picture(random_pixels(3)), path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    path.chmod(0o604)
    save_file(Picture(random_pixels(3)), path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


@pytest.mark.parametrize(("channels", "dtype"), [(3, np.uint8), (4, np.uint8), (3, np.uint16), (4, np.uint16)])
def test_qimage_round_trip(qapp, channels, dtype):
    picture = Picture(random_pixels(channels, dtype))
    back = from_qimage(to_qimage(picture))
    assert back.depth == picture.depth and back.has_alpha == (channels == 4)
    assert np.array_equal(back.pixels, picture.pixels)


def test_raw_is_little_endian_and_reads_back():
    pixels = random_pixels(4, np.uint16)
    raw = Picture(pixels).raw()
    assert raw[:2] == int(pixels[0, 0, 0]).to_bytes(2, "little")
    assert np.array_equal(from_raw(raw, 17, 12, "RGBA", 16).pixels, pixels)


# -- photos (issue 23): orientation, profile, frames ------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_on_opening(tmp_path, orientation):
    from PIL import ImageOps

    stored = Image.fromarray(np.random.default_rng(orientation).integers(0, 255, (12, 20, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "photo.png", exif=exif)
    with Image.open(tmp_path / "photo.png") as image:
        shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert np.array_equal(load_file(tmp_path / "photo.png").pixels, shown)


def test_tiff_orientation_is_applied(tmp_path):
    import tifffile

    shown = np.zeros((10, 16, 3), np.uint16)
    shown[0, 0] = 65535
    tifffile.imwrite(tmp_path / "t.tif", np.rot90(shown, 1).copy(), photometric="rgb",
                     extratags=[(274, "H", 1, 6, True)])
    assert np.array_equal(load_file(tmp_path / "t.tif").pixels, shown)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg", ".webp"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_the_profile_is_kept_from_opening_to_saving(tmp_path, suffix, dtype):
    from photo_profiles import clay

    pixels = np.full((8, 8, 3), 100, dtype)
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "in.png", icc_profile=clay())
    picture = load_file(tmp_path / "in.png")
    assert picture.icc == clay()
    picture = Picture(pixels, "x", picture.icc)
    save_file(picture, tmp_path / f"out{suffix}")
    assert load_file(tmp_path / f"out{suffix}").icc == clay()


def test_a_profiled_picture_is_shown_colour_managed(qapp):
    from photo_profiles import clay

    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[:] = (20, 230, 30)  # a saturated Adobe RGB green
    plain, managed = to_qimage(Picture(pixels)), to_qimage(Picture(pixels, "x", clay()))
    assert plain.pixelColor(0, 0).green() == 230
    assert managed.pixelColor(0, 0).red() == 0 and managed.pixelColor(0, 0).green() > 230  # clipped to sRGB


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_multi_frame_files_are_refused_before_decoding(tmp_path, suffix):
    import tifffile

    if suffix == ".tif":
        tifffile.imwrite(tmp_path / "a.tif", np.zeros((3, 8, 8, 3), np.uint8), photometric="rgb")
    else:
        frames = [Image.new("RGB", (8, 8), (60 * i, 0, 0)) for i in range(3)]
        frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(BadImage, match="has 3 (pages|frames).*the first would be used"):
        load_file(tmp_path / f"a{suffix}")

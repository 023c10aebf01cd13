"""Photos through the command line with real files and real ICC profiles (issue 23): orientation, colour
management, metadata and frames; the model is the built-in one unless a test says strength 0."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from photo_profiles import clay, linear_srgb, profile, smooth_picture, transform
from PIL import Image, ImageCms, ImageOps

from engine.cli import main
from engine.testing.metrics import psnr

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # what engine.colour takes as sRGB


def read_photo(path):
    from engine.imagefile import read_photo

    return read_photo(path)


def upscale_file(source, target, *flags: str) -> None:
    assert main(["upscale", str(source), "-o", str(target), "-q", *flags]) == 0


def to_u8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


def to_u16(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0, 1) * 65535).astype(np.uint16)


def as_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535
    return array.astype(np.float32)


# -- orientation --------------------------------------------------------------------------------------------
def marked(width: int, height: int) -> np.ndarray:
    """Grey with a white block in the top-left corner and a black one at the top right, as a viewer shows it."""
    shown = np.full((height, width, 3), 128, np.uint8)
    shown[:8, :12] = 255
    shown[:8, -12:] = 0
    return shown


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(tmp_path, orientation):
    shown = marked(64, 96)  # portrait as the viewer shows it
    # Store the pixels as a camera would: the inverse of what the tag says to apply (Pillow's own table).
    inverse = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}[orientation]
    stored_image = Image.fromarray(shown)
    exif = stored_image.getexif()
    exif[0x0112] = inverse
    stored = ImageOps.exif_transpose(stored_image)  # applies `inverse`: the stored pixels
    exif[0x0112] = orientation
    exif[0x010F] = "Phone"
    source = tmp_path / "in.png"
    stored.save(source, exif=exif)
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(source))), shown)  # Pillow agrees

    upscale_file(source, tmp_path / "out.png", "--strength", "0")
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (128, 192)
        assert out.getexif().get(0x0112) in (None, 1)  # the tag is reset: the pixels are upright
        assert out.getexif().get(0x010F) == "Phone"  # the rest of the EXIF is carried
        pixels = np.asarray(out.convert("RGB")).astype(int)
    assert pixels[:12, :20].min() > 240 and pixels[:12, -20:].max() < 15


def test_phone_jpeg_orientation_6_through_the_model(tmp_path):
    stored = Image.fromarray(to_u8(smooth_picture(96, 64)))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upscale_file(tmp_path / "phone.jpg", tmp_path / "out.jpg")
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.size == (128, 192)  # was 192x128: sideways
        assert out.getexif().get(0x0112) in (None, 1)


def test_tiff_orientation_tag_is_applied(tmp_path):
    shown = marked(40, 60)
    tifffile.imwrite(tmp_path / "in.tif", np.rot90(shown, 1).copy(), photometric="rgb",
                     extratags=[(274, "H", 1, 6, True)])  # stored turned left, tag 6: turn it right
    photo = read_photo(tmp_path / "in.tif")
    assert np.array_equal(photo.pixels, shown) and photo.meta.orientation == 1


# -- colour management ------------------------------------------------------------------------------------
def display(values: np.ndarray, icc: bytes) -> np.ndarray:
    """What a colour-managed viewer shows (sRGB) for float pixels in `icc`."""
    return np.clip(transform(values, icc, SRGB), 0, 1)


def reference_run(tmp_path, picture: np.ndarray, icc: bytes, name: str) -> np.ndarray:
    """What a careful user does by hand: convert to sRGB (16-bit), upscale that, convert back to `icc`."""
    in_srgb = to_u16(transform(picture, icc, SRGB))
    tifffile.imwrite(tmp_path / f"{name}-srgb.tif", in_srgb, photometric="rgb")
    upscale_file(tmp_path / f"{name}-srgb.tif", tmp_path / f"{name}-srgb-2x.tif")
    return transform(as_float(tifffile.imread(tmp_path / f"{name}-srgb-2x.tif")), SRGB, icc)


@pytest.mark.parametrize("which", ["linear-srgb-16bit", "adobe-rgb-16bit"])
def test_profiled_input_matches_convert_upscale_convert_back(tmp_path, which):
    icc = linear_srgb() if which.startswith("linear") else clay()
    picture = transform(smooth_picture(48, 40), SRGB, icc)  # the same scene, stored in `icc`
    tifffile.imwrite(tmp_path / "in.tif", to_u16(picture), photometric="rgb", iccprofile=icc)
    upscale_file(tmp_path / "in.tif", tmp_path / "out.tif")
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        result = as_float(tif.pages.first.asarray())
        assert tif.pages.first.tags[34675].value == icc  # the output is tagged with the source's profile
    expected = reference_run(tmp_path, as_float(to_u16(picture)), icc, which)
    # The issue asks for >= 45 dB; both runs are the same model on the same sRGB pixels, so they agree to
    # far more (97 dB here). 60 dB, because plain Lanczos already reaches 48 dB on this picture.
    assert psnr(display(result, icc), display(expected, icc)) >= 60.0
    # The bound means something: plain Lanczos (strength 0) falls short of it.
    upscale_file(tmp_path / "in.tif", tmp_path / "lanczos.tif", "--strength", "0")
    lanczos = as_float(tifffile.imread(tmp_path / "lanczos.tif"))
    assert psnr(display(lanczos, icc), display(expected, icc)) < 60.0


def test_adobe_rgb_8bit_png_matches_convert_upscale_convert_back(tmp_path):
    icc = clay()
    picture = as_float(to_u8(transform(smooth_picture(48, 40, seed=1), SRGB, icc)))
    Image.fromarray(to_u8(picture)).save(tmp_path / "in.png", icc_profile=icc)
    upscale_file(tmp_path / "in.png", tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as out:
        assert out.info["icc_profile"] == icc
        result = as_float(np.asarray(out))
    expected = reference_run(tmp_path, picture, icc, "clay8")
    assert psnr(display(result, icc), display(expected, icc)) >= 45.0


def test_srgb_tagged_input_gives_the_untagged_result_bit_for_bit(tmp_path):
    picture = to_u8(smooth_picture(40, 32, seed=2))
    Image.fromarray(picture).save(tmp_path / "plain.png")
    Image.fromarray(picture).save(tmp_path / "tagged.png", icc_profile=SRGB)
    upscale_file(tmp_path / "plain.png", tmp_path / "plain-2x.png")
    upscale_file(tmp_path / "tagged.png", tmp_path / "tagged-2x.png")
    with Image.open(tmp_path / "plain-2x.png") as plain, Image.open(tmp_path / "tagged-2x.png") as tagged:
        assert np.array_equal(np.asarray(plain), np.asarray(tagged))
        assert "icc_profile" not in plain.info and tagged.info["icc_profile"] == SRGB


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg", ".webp"])
@pytest.mark.parametrize("depth", [8, 16])
def test_every_output_format_keeps_the_profile(tmp_path, suffix, depth):
    icc = clay()
    picture = smooth_picture(24, 20)
    pixels = to_u8(picture) if depth == 8 else to_u16(picture)
    tifffile.imwrite(tmp_path / "in.tif", pixels, photometric="rgb", iccprofile=icc)
    upscale_file(tmp_path / "in.tif", tmp_path / f"out{suffix}", "--strength", "0")
    assert read_photo(tmp_path / f"out{suffix}").meta.icc == icc


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("which", ["linear", "clay"])
def test_round_trip_through_the_working_space_keeps_every_depth(tmp_path, dtype, which):
    """Converting in and back out (strength 0 at an exact 2x of a flat picture: Lanczos changes nothing)
    returns the input's values at its own depth and type."""
    icc = linear_srgb() if which == "linear" else clay()
    rng = np.random.default_rng(3)
    colours = rng.uniform(0.02, 0.98, (4, 3)).astype(np.float32)
    flat = np.repeat(np.repeat(colours[:, None, :], 16, axis=1), 16, axis=0).reshape(64, 16, 3)
    pixels = {"uint8": to_u8, "uint16": to_u16, "float32": lambda v: v}[dtype](flat)
    tifffile.imwrite(tmp_path / "in.tif", pixels, photometric="rgb", iccprofile=icc)
    upscale_file(tmp_path / "in.tif", tmp_path / "out.tif", "--strength", "0")
    out = tifffile.imread(tmp_path / "out.tif")
    assert out.dtype == pixels.dtype
    tolerance = {"uint8": 1, "uint16": 2, "float32": 1e-4}[dtype]
    for block in range(4):  # the middle of each colour block, away from the borders where Lanczos rings
        inner = out[32 * block + 10:32 * block + 22, 10:22].astype(np.float64)
        assert np.abs(inner - pixels[16 * block + 8, 8].astype(np.float64)).max() <= tolerance


def test_colours_outside_srgb_survive(tmp_path):
    """A saturated Adobe-RGB green has no sRGB equivalent; it is carried around the model, not clipped."""
    icc = clay()
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, :] = (20, 230, 30)
    tifffile.imwrite(tmp_path / "in.tif", pixels, photometric="rgb", iccprofile=icc)
    outside = transform(as_float(pixels[:1, :1]), icc, SRGB)
    assert outside.min() < -0.05  # really outside sRGB
    upscale_file(tmp_path / "in.tif", tmp_path / "out.tif", "--strength", "0")
    out = tifffile.imread(tmp_path / "out.tif")
    assert np.abs(out[8:-8, 8:-8].astype(int) - pixels[0, 0].astype(int)).max() <= 1


def test_grey_profile_is_respected(tmp_path):
    icc = profile("Gray-D50-elle-V2-g10.icc")  # linear grey
    flat = np.full((32, 32), 0.2, np.float32)
    tifffile.imwrite(tmp_path / "in.tif", to_u16(flat), photometric="minisblack", iccprofile=icc)
    upscale_file(tmp_path / "in.tif", tmp_path / "out.tif", "--strength", "0")
    out = tifffile.imread(tmp_path / "out.tif")
    assert out.ndim == 2 and np.abs(out[8:-8, 8:-8].astype(int) - to_u16(flat)[0, 0]).max() <= 2
    assert read_photo(tmp_path / "out.tif").meta.icc == icc


# -- metadata ---------------------------------------------------------------------------------------------
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def camera_jpeg(path) -> None:
    image = Image.fromarray(to_u8(smooth_picture(48, 32)))
    exif = image.getexif()
    exif[0x0112] = 1
    exif[0x010F] = "Camera maker"
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2026:12:01 10:00:00"
    sub[0xA002], sub[0xA003] = 48, 32
    image.save(path, exif=exif, xmp=XMP, dpi=(300, 300), icc_profile=clay(), quality=95)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_metadata_is_carried(tmp_path, suffix):
    camera_jpeg(tmp_path / "in.jpg")
    upscale_file(tmp_path / "in.jpg", tmp_path / f"out{suffix}", "--strength", "0")
    meta = read_photo(tmp_path / f"out{suffix}").meta
    assert meta.icc == clay() and meta.xmp == XMP
    if suffix != ".webp":  # WebP has no resolution field
        assert meta.dpi is not None and np.allclose(meta.dpi, 300, atol=0.01)
    if suffix != ".tif":  # EXIF into TIFF is not written (tifffile cannot write an Exif IFD)
        exif = Image.Exif()
        exif.load(meta.exif)
        assert exif[0x010F] == "Camera maker"
        sub = exif.get_ifd(0x8769)
        assert sub[0x9003] == "2026:12:01 10:00:00"
        assert 0xA002 not in sub and 0xA003 not in sub and 0x0112 not in exif  # stale sizes and orientation


def test_strip_metadata_keeps_only_the_profile(tmp_path):
    camera_jpeg(tmp_path / "in.jpg")
    upscale_file(tmp_path / "in.jpg", tmp_path / "out.jpg", "--strength", "0", "--strip-metadata")
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.info.get("icc_profile") == clay()
        assert len(out.getexif()) == 0 and "xmp" not in out.info
        assert out.info.get("dpi") in (None, (1, 1), (72, 72))


# -- frames -----------------------------------------------------------------------------------------------
def frames(count: int = 3) -> list[Image.Image]:
    return [Image.fromarray(np.full((24, 32, 3), 40 + 80 * i, np.uint8)) for i in range(count)]


def save_animation(path, kind: str) -> None:
    first, *rest = frames()
    if kind == "tiff":
        tifffile.imwrite(path, np.stack([np.asarray(f) for f in frames()]), photometric="rgb")
    else:
        first.save(path, save_all=True, append_images=rest, duration=100, loop=0, **(
            {"lossless": True} if kind == "webp" else {}))


@pytest.mark.parametrize("kind,suffix", [("gif", ".gif"), ("webp", ".webp"), ("apng", ".png"), ("tiff", ".tif")])
def test_multi_frame_input_is_refused_with_one_line(tmp_path, capsys, kind, suffix):
    source = tmp_path / f"anim{suffix}"
    save_animation(source, kind)
    assert main(["upscale", str(source), "-o", str(tmp_path / "out.png"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "3 " in err and "the first would be used" in err and "--frame 1" in err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("kind,suffix", [("gif", ".gif"), ("webp", ".webp"), ("apng", ".png"), ("tiff", ".tif")])
def test_frame_option_picks_that_frame(tmp_path, kind, suffix):
    source = tmp_path / f"anim{suffix}"
    save_animation(source, kind)
    upscale_file(source, tmp_path / "out.png", "--frame", "2", "--strength", "0")
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (64, 48)
        assert abs(int(np.asarray(out.convert("RGB"))[24, 32, 0]) - 120) <= 2


def test_frame_out_of_range_says_how_many(tmp_path, capsys):
    save_animation(tmp_path / "anim.gif", "gif")
    assert main(["upscale", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "o.png"), "--frame", "9"]) == 2
    assert "has 3 frame(s) but frame 9" in capsys.readouterr().err


def test_tiff_with_sub_ifds_or_a_volume_is_refused(tmp_path, capsys):
    with tifffile.TiffWriter(tmp_path / "sub.tif") as tif:
        tif.write(np.zeros((32, 32, 3), np.uint8), photometric="rgb", subifds=1)
        tif.write(np.zeros((16, 16, 3), np.uint8), photometric="rgb", subfiletype=1)
    tifffile.imwrite(tmp_path / "volume.tif", np.zeros((5, 8, 32, 32), np.uint8), volumetric=True)
    for name, words in (("sub.tif", "sub-IFDs"), ("volume.tif", "dimensional")):
        assert main(["upscale", str(tmp_path / name), "-o", str(tmp_path / "o.png"), "-q"]) == 2
        assert words in capsys.readouterr().err


def test_bomb_is_refused_before_decoding(tmp_path, capsys):
    """300 zlib pages of 1024x1024 (1 MB on disk, 900 MiB decoded): refused from the headers."""
    import tracemalloc

    from engine.errors import InvalidInput
    from engine.imagefile import read_image

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((300, 1024, 1024, 3), np.uint8), compression="zlib", photometric="rgb")
    (tmp_path / "bomb.tif").write_bytes(buffer.getvalue())
    tracemalloc.start()
    with pytest.raises(InvalidInput, match="300 pages"):
        read_image(tmp_path / "bomb.tif")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20


@pytest.mark.parametrize("side", [20000, 40000])
def test_a_png_declaring_too_many_pixels_is_refused_from_its_header(tmp_path, capsys, side):
    """A 100-byte PNG whose IHDR says side x side: refused in one line, nothing decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(data)
    assert main(["upscale", str(tmp_path / "huge.png"), "-o", str(tmp_path / "o.png"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("over the limit" in err or "too large to decode" in err), err

"""Photos over the real server (issues 23 and 16 item 1): one picture per upload, refused from its headers
before decoding (the multi-page TIFF bomb against a real `uprez serve` process); orientation of PNG/TIFF
uploads; a job's ICC profile, from the file or as a `profile` part beside raw pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from photo_profiles import clay, linear_srgb, smooth_picture, transform
from PIL import Image, ImageCms
from server_helpers import FAST, error_of, post_job

from engine.testing.metrics import psnr
from plugin.uprez_client import RejectedInput

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def tiff_bomb(pages: int = 300, side: int = 1024) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((pages, side, side, 3), np.uint8), compression="zlib", photometric="rgb")
    return buffer.getvalue()


def test_multi_page_tiff_bomb_is_refused_before_decoding(serve_process):
    """300 zlib pages of 1024x1024 RGB: a 1.1 MB upload declaring 900 MiB. Before: decoded whole (peak RSS
    +907 MiB), then 422. Now: 422 from the headers, and the server's peak RSS barely moves."""
    engine = serve_process("--model", "builtin", "--max-upload-mb", "64")
    token = (engine.config_dir / "token").read_text().strip()
    data = tiff_bomb()
    assert len(data) < 1.5 * 2**20
    before = peak_rss_kib(engine.process.pid)
    status, _headers, body = post_job(engine.url, token, {"format": "tiff"}, data)
    growth_mib = (peak_rss_kib(engine.process.pid) - before) / 1024
    assert status == 422
    message = error_of(body)
    assert "300 pages" in message and "\n" not in message
    assert growth_mib < 100, f"the server's peak RSS grew by {growth_mib:.0f} MiB: it decoded the pages"


def test_animated_png_upload_is_refused(server, client):
    frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(RejectedInput, match="3 frames"):
        client.submit_file(buffer.getvalue(), **FAST)


def test_tiff_with_sub_ifds_is_refused(client):
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        tif.write(np.zeros((32, 32, 3), np.uint8), photometric="rgb", subifds=1)
        tif.write(np.zeros((16, 16, 3), np.uint8), photometric="rgb", subfiletype=1)
    with pytest.raises(RejectedInput, match="sub-IFDs"):
        client.submit_file(buffer.getvalue(), **FAST)


def test_png_upload_is_turned_upright_and_keeps_its_profile(client):
    stored = Image.new("RGB", (32, 24), (128, 128, 128))
    exif = stored.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif, icc_profile=clay())
    job = client.submit_file(buffer.getvalue(), **FAST)
    client.wait(job)
    data, meta = client.result(job)
    assert (meta["width"], meta["height"]) == (48, 64)
    with Image.open(io.BytesIO(data)) as result:
        assert result.size == (48, 64)
        assert result.info["icc_profile"] == clay()
        assert result.getexif().get(0x0112) in (None, 1)


def test_tiff_upload_keeps_its_profile(client):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.full((24, 32, 3), 30000, np.uint16), photometric="rgb", iccprofile=linear_srgb())
    job = client.submit_file(buffer.getvalue(), **FAST)
    client.wait(job)
    data, _meta = client.result(job)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert tif.pages.first.tags[34675].value == linear_srgb()


def run_raw(client, pixels: np.ndarray, profile: bytes | None) -> np.ndarray:
    height, width = pixels.shape[:2]
    job = client.submit_raw(pixels.astype("<u2").tobytes(), width, height, "RGB", 16, profile=profile,
                            seed=3, **FAST)
    client.wait(job)
    data, meta = client.result(job)
    return np.frombuffer(data, "<u2").reshape(meta["height"], meta["width"], 3).astype(np.float32) / 65535


def test_raw_pixels_with_their_profile_match_convert_upscale_convert_back(client):
    """A linear 16-bit buffer sent with its profile (as the Krita and GIMP bridges do) gives what converting
    to sRGB, upscaling and converting back gives; sent without it, the model sees the wrong tones."""
    icc = linear_srgb()
    picture = transform(smooth_picture(32, 32), SRGB, icc)
    pixels = np.round(picture * 65535).astype(np.uint16)
    result = run_raw(client, pixels, icc)
    srgb_pixels = np.round(np.clip(transform(pixels / 65535.0, icc, SRGB), 0, 1) * 65535).astype(np.uint16)
    expected = transform(run_raw(client, srgb_pixels, None), SRGB, icc)
    unmanaged = run_raw(client, pixels, None)

    def shown(values: np.ndarray) -> np.ndarray:
        return np.clip(transform(values, icc, SRGB), 0, 1)

    assert psnr(shown(result), shown(expected)) >= 45.0
    assert psnr(shown(unmanaged), shown(expected)) < psnr(shown(result), shown(expected)) - 10


def test_a_profile_part_that_is_not_a_profile_is_refused(client):
    with pytest.raises(RejectedInput, match="profile"):
        client.submit_raw(b"\x00" * 16 * 16 * 3, 16, 16, "RGB", 8, profile=b"not an icc profile", **FAST)


def test_an_srgb_profile_part_changes_nothing(client):
    """Pixels sent with an sRGB profile come back exactly as without one (no transform runs)."""
    pixels = np.round(smooth_picture(16, 16) * 65535).astype(np.uint16)
    assert np.array_equal(run_raw(client, pixels, SRGB), run_raw(client, pixels, None))

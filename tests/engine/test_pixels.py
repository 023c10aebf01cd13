"""Pixel formats in and out, padding to the latent multiple, and the conventional resize."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from engine.pixels import conventional_resize, crop_to, from_image, pad_to_multiple, to_image


@given(st.integers(1, 70), st.integers(1, 70), st.sampled_from([8, 16, 32]))
def test_pad_then_crop_round_trips(h, w, multiple):
    x = torch.randn(1, 3, h, w)
    padded, size = pad_to_multiple(x, multiple)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    assert torch.equal(crop_to(padded, size), x)


def test_padding_reflects_rather_than_stretching():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5).contiguous()
    padded, _ = pad_to_multiple(x, 8)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
def test_array_round_trip_keeps_format(dtype, channels):
    rng = np.random.default_rng(0)
    shape = (7, 9) if channels is None else (7, 9, channels)
    if dtype == np.float32:
        array = rng.random(shape, dtype=np.float32)
    else:
        array = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    pixels = from_image(array)
    back = to_image(pixels.rgb, pixels.alpha, pixels)
    assert back.dtype == array.dtype and back.shape == array.shape
    tolerance = 1e-6 if dtype == np.float32 else 0
    np.testing.assert_allclose(back.astype(np.float64), array.astype(np.float64), atol=tolerance)


def test_pil_round_trip_rgba():
    image = Image.new("RGBA", (5, 4), (10, 20, 30, 40))
    pixels = from_image(image)
    assert pixels.alpha is not None and pixels.size == (5, 4)
    back = to_image(pixels.rgb, pixels.alpha, pixels)
    assert isinstance(back, Image.Image) and back.mode == "RGBA" and back.getpixel((0, 0)) == (10, 20, 30, 40)


def test_sixteen_bit_precision_survives():
    array = np.full((4, 4, 3), 12345, dtype=np.uint16)
    pixels = from_image(array)
    assert to_image(pixels.rgb, None, pixels)[0, 0, 0] == 12345  # not squeezed through 8 bits


@pytest.mark.parametrize("bad", [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((4, 4, 3), np.int64), np.zeros((2, 2, 2, 2), np.uint8)])
def test_bad_arrays_are_refused(bad):
    with pytest.raises(ValueError):
        from_image(bad)


def test_conventional_resize_of_a_constant_is_constant():
    out = conventional_resize(np.full((5, 7, 3), 0.25, np.float32), (14, 10))
    assert out.shape == (10, 14, 3)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)

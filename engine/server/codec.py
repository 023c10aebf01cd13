"""Images on the wire: raw pixel buffers (any channel order, 8/16-bit or float) and PNG/TIFF bytes, both ways.

The engine works on (H, W, C) arrays in RGB(A) or grey(+alpha) order; this module converts the caller's
buffer into that and the result back into exactly the caller's format, so Krita's BGRA bytes travel
without any encoding.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidInput
from engine.photo import PhotoMeta, from_pillow, from_tiff_page, orient, tiff_options, upright
from engine.pngmeta import with_metadata
from engine.probe import check, declared
from plugin.uprez_client.protocol import PNG_SIGNATURE, TIFF_SIGNATURES

KINDS = ("raw", "png", "tiff")
CHANNEL_ORDERS = ("RGBA", "BGRA", "RGB", "BGR", "L", "LA")
DEPTHS = {8: np.dtype(np.uint8), 16: np.dtype("<u2"), 32: np.dtype("<f4")}  # little-endian, as editors hand out
MEDIA_TYPES = {"raw": "application/octet-stream", "png": "image/png", "tiff": "image/tiff"}


@dataclass(frozen=True)
class ImageFormat:
    """How an image travels: `raw` with its geometry and sample layout, or a `png`/`tiff` file."""

    kind: str = "raw"
    width: int = 0  # raw only
    height: int = 0
    channels: str = "RGBA"  # raw only: the byte order of the samples in one pixel
    depth: int = 8  # raw only: bits per sample, 8 / 16 (unsigned) / 32 (float in [0, 1])

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"format must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind != "raw":
            return
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInput(f"a raw image needs {name} as a whole number of pixels >= 1, got {value!r}")
        if self.channels not in CHANNEL_ORDERS:
            raise InvalidInput(f"channels must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channels!r}")
        if self.depth not in DEPTHS or isinstance(self.depth, bool):
            raise InvalidInput(f"depth must be 8, 16 or 32 (float) bits per sample, got {self.depth!r}")

    @property
    def expected_bytes(self) -> int:
        return self.width * self.height * len(self.channels) * (self.depth // 8)


def sniff(data: bytes) -> str | None:
    """`png` or `tiff` from a file's first bytes, None when it is neither."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(TIFF_SIGNATURES):
        return "tiff"
    return None


def _engine_layout(order: str) -> str:
    """The channel layout the engine uses for a caller's order: colour as RGB(A), grey as L(A)."""
    if order in ("L", "LA"):
        return order
    return "RGBA" if "A" in order else "RGB"


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise InvalidInput("the PNG is truncated or damaged (no IHDR header); send the whole file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def image_size(data: bytes, fmt: ImageFormat) -> tuple[int, int]:
    """(width, height) from the headers, after refusing a file that is not one picture (pages, frames,
    sub-IFDs, a volume): nothing is decoded, so size limits are checked before any real work."""
    if fmt.kind == "raw":
        return fmt.width, fmt.height
    if sniff(data) != fmt.kind:
        raise InvalidInput(f"the image part is not a {fmt.kind.upper()} file (its first bytes say "
                           f"{sniff(data) or 'neither PNG nor TIFF'}); set format to match what you send")
    if fmt.kind == "png":
        from PIL import Image

        width, height = _png_size(data)  # a clear message for a truncated header
        if width * height > (Image.MAX_IMAGE_PIXELS or 2**62):
            return width, height  # beyond Pillow's own limit: the caller refuses it by size (413), not decoded
    info = declared(data)
    check(info, f"the {fmt.kind.upper()}", max_pixels=2**62, frame_hint=None)  # pixels: the caller's limit
    return info.width, info.height


def _decode_png(data: bytes) -> tuple[np.ndarray, PhotoMeta]:
    from PIL import Image

    from engine.photo import pil_to_array

    with Image.open(io.BytesIO(data)) as image:
        if data[24:25] == b"\x10":  # IHDR bit depth 16: Pillow cannot hold 16-bit colour, pypng can
            import png

            width, height, rows, info = png.Reader(bytes=data).asDirect()
            array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
            return array.reshape(height, width, info["planes"]), from_pillow(image)
        image.load()  # decode now: a truncated file fails here, not inside the job
        return np.array(pil_to_array(image)), from_pillow(image)


def _decode_tiff(data: bytes) -> tuple[np.ndarray, PhotoMeta]:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:  # image_size has made sure it holds one page
        page = tif.pages.first
        array, meta = page.asarray(), from_tiff_page(page)
    return _tiff_samples(array), meta


def _tiff_samples(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[2] > 4:
        array = np.moveaxis(array, 0, 2)  # planar TIFF
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype not in (np.uint8, np.uint16):
        raise InvalidInput(f"TIFF samples of type {array.dtype} are not supported; use 8 or 16-bit, or float")
    return array


def decode_image(data: bytes, fmt: ImageFormat) -> np.ndarray:
    """The caller's image as an (H, W, C) array in the engine's layout (RGB(A) or L(A)), upright."""
    return decode_photo(data, fmt)[0]


def decode_photo(data: bytes, fmt: ImageFormat) -> tuple[np.ndarray, PhotoMeta]:
    """`decode_image` plus the file's profile and metadata (none for raw: its profile travels as a part).

    A PNG's or TIFF's EXIF/TIFF orientation is applied, so the result is upright and says orientation 1."""
    if fmt.kind == "raw":
        if len(data) != fmt.expected_bytes:
            raise InvalidInput(
                f"the raw image is {len(data)} bytes but {fmt.width}x{fmt.height} {fmt.channels} at {fmt.depth} "
                f"bits needs {fmt.width}*{fmt.height}*{len(fmt.channels)}*{fmt.depth // 8} = {fmt.expected_bytes}; "
                "check width, height, channels and depth"
            )
        array = np.frombuffer(data, dtype=DEPTHS[fmt.depth]).reshape(fmt.height, fmt.width, len(fmt.channels))
        layout = _engine_layout(fmt.channels)
        array = array[:, :, [fmt.channels.index(c) for c in layout]]
        return array.astype(array.dtype.newbyteorder("=")), PhotoMeta()  # native order, and a private copy
    image_size(data, fmt)  # checks the signature, and that the file holds one picture
    try:
        array, meta = _decode_png(data) if fmt.kind == "png" else _decode_tiff(data)
    except InvalidInput:
        raise
    except Exception as exc:  # Pillow, pypng and tifffile each raise their own types for damaged files
        raise InvalidInput(f"cannot decode the {fmt.kind.upper()} ({type(exc).__name__}: {exc}); "
                           "is the file complete?") from exc
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InvalidInput(f"the {fmt.kind.upper()} has an unsupported layout {array.shape}; use grey, RGB or RGBA")
    return orient(array, meta.orientation), upright(meta)


def decode_mask(data: bytes, kind: str, size: tuple[int, int]) -> np.ndarray:
    """An 8-bit selection mask (raw: one byte per pixel; or an 8-bit PNG) as (H, W) uint8, the image's size."""
    width, height = size
    if kind == "raw":
        if len(data) != width * height:
            raise InvalidInput(f"the raw mask is {len(data)} bytes but the image is {width}x{height}, so it must be "
                               f"{width * height} bytes (8-bit, one channel)")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width).copy()
    if kind != "png":
        raise InvalidInput(f"mask_format must be raw or png, got {kind!r}")
    fmt = ImageFormat(kind="png")
    mask_w, mask_h = image_size(data, fmt)
    if (mask_w, mask_h) != size:
        raise InvalidInput(f"the mask is {mask_w}x{mask_h} but the image is {width}x{height}; "
                           "they must be the same size")
    array = decode_image(data, fmt)
    if array.dtype != np.uint8:
        raise InvalidInput(f"the mask must be 8-bit, got {array.dtype.itemsize * 8}-bit samples")
    return array[:, :, 0] if array.shape[2] in (1, 2) else array[:, :, :3].mean(axis=2).round().astype(np.uint8)


def output_format(fmt: ImageFormat, result: np.ndarray) -> ImageFormat:
    """The caller's format resized to the result (and with alpha appended when region_only added one)."""
    if fmt.kind != "raw":
        return ImageFormat(kind=fmt.kind)
    channels = fmt.channels if result.shape[2] == len(fmt.channels) else fmt.channels + "A"
    return ImageFormat("raw", result.shape[1], result.shape[0], channels, fmt.depth)


def encode_result(result: np.ndarray, fmt: ImageFormat, photo: PhotoMeta | None = None,
                  ) -> tuple[bytes, dict[str, object]]:
    """The engine's result in the caller's format, plus metadata for the response headers; a PNG or TIFF
    carries `photo`'s profile and metadata (a raw result is in the profile the caller sent)."""
    photo = photo or PhotoMeta()
    if result.ndim == 2:
        result = result[:, :, None]
    out = output_format(fmt, result)
    height, width, planes = result.shape
    meta: dict[str, object] = {"format": out.kind, "width": width, "height": height}
    if out.kind == "raw":
        layout = _engine_layout(out.channels)
        ordered = result[:, :, [layout.index(c) for c in out.channels]]
        meta.update(channels=out.channels, depth=out.depth)
        return np.ascontiguousarray(ordered, dtype=DEPTHS[out.depth]).tobytes(), meta
    meta.update(channels=("L", "LA", "RGB", "RGBA")[planes - 1], depth=result.dtype.itemsize * 8)
    buffer = io.BytesIO()
    if out.kind == "tiff":
        import tifffile

        extra = {"photometric": "rgb"} if planes >= 3 else {"photometric": "minisblack"}
        if planes in (2, 4):
            extra["extrasamples"] = ["unassalpha"]
        tifffile.imwrite(buffer, result, **extra, **tiff_options(photo))
        return buffer.getvalue(), meta
    elif result.dtype == np.uint16:
        import png

        writer = png.Writer(width, height, greyscale=planes < 3, alpha=planes in (2, 4), bitdepth=16,
                            compression=1)
        writer.write(buffer, result.reshape(height, width * planes))
    else:
        from PIL import Image

        if result.dtype != np.uint8:  # float from a float TIFF cannot go into a PNG; 16-bit keeps most of it
            result = np.round(result.clip(0.0, 1.0) * 65535.0).astype(np.uint16)
            return encode_result(result, fmt, photo)
        image = Image.fromarray(result[:, :, 0] if planes == 1 else result)
        image.save(buffer, format="PNG", compress_level=1)  # speed over size: the bytes only cross loopback
    return with_metadata(buffer.getvalue(), photo), meta


def preview_jpeg(rgb: np.ndarray, quality: int = 80) -> str:
    """A small (h, w, 3) uint8 preview as base64 JPEG text, to ride inside a JSON event."""
    import base64

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")

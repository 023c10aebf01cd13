"""The region to upscale: a soft mask at the image's size, drawn as rectangles and brush strokes, feathered on read."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QImage, QPainter, QRadialGradient

TINT = QColor(255, 140, 0)  # the region's colour on the canvas
OVERLAY_OPACITY = 0.45
BRUSH_HARDNESS = 0.5  # the inner half of a brush dab is solid; the outer half fades out


class RegionMask:
    """A mask the image's size: alpha 255 = upscale with the model, 0 = keep (Lanczos), between = blend."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.image = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
        self.clear()

    def clear(self) -> None:
        self.image.fill(Qt.GlobalColor.transparent)
        self._empty = True
        self._box: tuple[int, int, int, int] | None = None
        self._box_stale = False
        self._alpha: np.ndarray | None = None

    def is_empty(self) -> bool:
        return self.bounding_box() is None

    def _changed(self, painted: bool) -> None:
        # The box costs a full scan of the mask (tens of ms at 24 MP): computed once per edit, on demand.
        self._box_stale = True
        self._alpha = None
        if painted:
            self._empty = False

    def add_rect(self, rect: QRectF) -> None:
        painter = QPainter(self.image)
        painter.fillRect(rect.normalized(), TINT)
        painter.end()
        self._changed(painted=True)

    def stroke(self, start: QPointF, end: QPointF, radius: float, erase: bool = False) -> None:
        """Soft round dabs from `start` to `end`, a quarter radius apart (the usual paint-brush spacing)."""
        radius = max(1.0, radius)
        distance = math.hypot(end.x() - start.x(), end.y() - start.y())
        count = max(1, int(distance / max(1.0, radius / 4)))
        painter = QPainter(self.image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        if erase:
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut)
        for i in range(count + 1):
            t = i / count
            centre = QPointF(start.x() + (end.x() - start.x()) * t, start.y() + (end.y() - start.y()) * t)
            gradient = QRadialGradient(centre, radius)
            solid = QColor(TINT)
            fade = QColor(TINT)
            fade.setAlpha(0)
            gradient.setColorAt(0.0, solid)
            gradient.setColorAt(BRUSH_HARDNESS, solid)
            gradient.setColorAt(1.0, fade)
            painter.setBrush(QBrush(gradient))
            painter.drawEllipse(centre, radius, radius)
        painter.end()
        self._changed(painted=not erase)

    def alpha(self) -> np.ndarray:
        """(H, W) uint8, read-only: the painted mask, unfeathered; cached until the next edit."""
        # The box, the overlay and the bytes sent at Run all read it: one conversion per edit, not one each.
        if self._alpha is None:
            alpha = self.image.convertToFormat(QImage.Format.Format_Alpha8)
            bits = alpha.constBits()
            bits.setsize(alpha.sizeInBytes())
            rows = np.frombuffer(bits, np.uint8).reshape(self.height, alpha.bytesPerLine())
            self._alpha = rows[:, :self.width].copy()
            self._alpha.flags.writeable = False
        return self._alpha

    def values(self, feather: float = 0.0) -> np.ndarray:
        """(H, W) uint8 mask with its edge softened by a Gaussian of `feather` image pixels (read-only)."""
        alpha = self.alpha()
        if feather <= 0 or not alpha.any():
            return alpha
        return np.asarray(Image.fromarray(alpha).filter(ImageFilter.GaussianBlur(feather)))

    def mask_bytes(self, feather: float = 0.0) -> bytes | None:
        """One byte per pixel for the engine, or None when nothing is selected (= the whole image)."""
        values = self.values(feather)
        return values.tobytes() if values.any() else None

    def bounding_box(self) -> tuple[int, int, int, int] | None:
        """(x, y, width, height) of the painted pixels, None when there are none; cached until the next edit."""
        if self._empty:
            return None
        if self._box_stale:
            alpha = self.alpha()
            rows, cols = np.nonzero(alpha.any(axis=1))[0], np.nonzero(alpha.any(axis=0))[0]
            self._box = None if rows.size == 0 else (
                int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
            self._box_stale = False
        return self._box


def overlay_image(values: np.ndarray) -> QImage:
    """The tinted overlay for a (H, W) uint8 mask, at OVERLAY_OPACITY."""
    height, width = values.shape
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[:, :, 0], rgba[:, :, 1], rgba[:, :, 2] = TINT.red(), TINT.green(), TINT.blue()
    rgba[:, :, 3] = (values.astype(np.uint16) * int(OVERLAY_OPACITY * 255) // 255).astype(np.uint8)
    return QImage(rgba.data, width, height, width * 4, QImage.Format.Format_RGBA8888).copy()

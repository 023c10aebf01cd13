"""The input image, fitted to the widget, with the region painter: rectangle, soft brush, eraser."""

from __future__ import annotations

from functools import lru_cache

from PyQt6.QtCore import QPointF, QRect, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from ui.imageio import Picture, to_qimage
from ui.region import OVERLAY_OPACITY, RegionMask, overlay_image

TOOLS = ("rect", "brush", "erase")
MARGIN = 12
EMPTY_HINT = "Drop an image here\n\nor Open… (Ctrl+O), or Paste (Ctrl+V)\n\nPNG · JPEG · WebP · TIFF, 8 or 16-bit"


@lru_cache(maxsize=4)
def _checker_tile(cell: int) -> QImage:
    tile = QImage(cell * 2, cell * 2, QImage.Format.Format_RGB32)
    tile.fill(QColor(204, 204, 204))
    painter = QPainter(tile)
    dark = QColor(153, 153, 153)
    painter.fillRect(0, 0, cell, cell, dark)
    painter.fillRect(cell, cell, cell, cell, dark)
    painter.end()
    return tile


def checkerboard(painter: QPainter, rect: QRectF, cell: int = 10) -> None:
    """The usual grey checks behind transparent pixels, starting with a dark one at the rect's corner."""
    painter.save()
    # One textured fill rather than a fillRect per check: thousands of Python calls per repaint otherwise.
    painter.setBrushOrigin(QPointF(int(rect.left()), int(rect.top())))
    painter.fillRect(rect, QBrush(_checker_tile(cell)))
    painter.restore()


class Canvas(QWidget):
    """Shows the picture and lets the user mark the region; `region_changed` after every finished edit."""

    region_changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.setMouseTracking(True)
        self.picture: Picture | None = None
        self.image: QImage | None = None
        self.mask: RegionMask | None = None
        self.tool = "rect"
        self.brush_size = 48  # image pixels, diameter
        self.feather = 8.0
        self._overlay: QImage | None = None
        self._drag_start: QPointF | None = None  # image coordinates
        self._drag_now: QPointF | None = None
        self._cursor: QPointF | None = None  # widget coordinates, for the brush outline

    # -- content --------------------------------------------------------------------------------------
    def set_picture(self, picture: Picture | None) -> None:
        self.picture = picture
        self.image = to_qimage(picture) if picture is not None else None
        self.mask = RegionMask(picture.width, picture.height) if picture is not None else None
        self._overlay = None
        self.update()
        self.region_changed.emit()

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {tool!r}")
        self.tool = tool
        self.update()

    def set_feather(self, feather: float) -> None:
        self.feather = float(feather)
        self._refresh_overlay()

    def clear_region(self) -> None:
        if self.mask is not None:
            self.mask.clear()
        self._refresh_overlay()
        self.region_changed.emit()

    def mask_bytes(self) -> bytes | None:
        """The feathered region for the engine, or None for the whole image."""
        return self.mask.mask_bytes(self.feather) if self.mask is not None else None

    def _refresh_overlay(self) -> None:
        if self.mask is None or self.mask.is_empty():
            self._overlay = None
        else:
            self._overlay = overlay_image(self.mask.values(self.feather))
        self.update()

    # -- geometry -------------------------------------------------------------------------------------
    def image_rect(self) -> QRectF:
        """Where the picture is drawn: fitted inside the widget with a margin, centred."""
        if self.image is None:
            return QRectF()
        available = QRectF(self.rect()).adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
        zoom = min(available.width() / self.image.width(), available.height() / self.image.height())
        width, height = self.image.width() * zoom, self.image.height() * zoom
        return QRectF(available.center().x() - width / 2, available.center().y() - height / 2, width, height)

    def zoom(self) -> float:
        rect = self.image_rect()
        return rect.width() / self.image.width() if self.image is not None and rect.width() else 1.0

    def to_image(self, point: QPointF) -> QPointF:
        rect = self.image_rect()
        zoom = self.zoom()
        return QPointF((point.x() - rect.left()) / zoom, (point.y() - rect.top()) / zoom)

    def to_widget(self, point: QPointF) -> QPointF:
        rect = self.image_rect()
        zoom = self.zoom()
        return QPointF(rect.left() + point.x() * zoom, rect.top() + point.y() * zoom)

    # -- mouse ----------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self.mask is None or event.button() != Qt.MouseButton.LeftButton:
            return
        point = self.to_image(event.position())
        self._drag_start = self._drag_now = point
        if self.tool in ("brush", "erase"):
            self.mask.stroke(point, point, self.brush_size / 2, erase=self.tool == "erase")
            self._overlay = None  # the raw mask is drawn while painting; feathering waits for the release
        self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        # Only what changed is repainted: redrawing a large picture on every pointer move makes hovering lag.
        previous, self._cursor = self._cursor, event.position()
        dirty = self._outline_rect(previous).united(self._outline_rect(self._cursor))
        if self.mask is not None and self._drag_start is not None and self._drag_now is not None:
            point = self.to_image(event.position())
            if self.tool in ("brush", "erase"):
                self.mask.stroke(self._drag_now, point, self.brush_size / 2, erase=self.tool == "erase")
                dirty = dirty.united(self._stroke_rect(self._drag_now, point))
            else:
                dirty = dirty.united(self._drag_rect(self._drag_now)).united(self._drag_rect(point))
            self._drag_now = point
        if not dirty.isEmpty():
            self.update(dirty)

    def _outline_rect(self, cursor: QPointF | None) -> QRect:
        """The widget area the brush outline at `cursor` covers (empty for the rectangle tool)."""
        if cursor is None or self.image is None or self.tool not in ("brush", "erase"):
            return QRect()
        radius = self.brush_size / 2 * self.zoom() + 2
        return QRectF(cursor.x() - radius, cursor.y() - radius, 2 * radius, 2 * radius).toAlignedRect()

    def _stroke_rect(self, start: QPointF, end: QPointF) -> QRect:
        """The widget area a brush stroke between two image points changed."""
        rect = QRectF(self.to_widget(start), self.to_widget(end)).normalized()
        radius = self.brush_size / 2 * self.zoom() + 2
        return rect.adjusted(-radius, -radius, radius, radius).toAlignedRect()

    def _drag_rect(self, corner: QPointF) -> QRect:
        """The widget area of the dashed rectangle from the drag's start to `corner`."""
        if self._drag_start is None:
            return QRect()
        rect = QRectF(self.to_widget(self._drag_start), self.to_widget(corner)).normalized()
        return rect.adjusted(-2, -2, 2, 2).toAlignedRect()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self.mask is None or self._drag_start is None or event.button() != Qt.MouseButton.LeftButton:
            return
        end = self.to_image(event.position())
        if self.tool == "rect":
            rect = QRectF(self._drag_start, end).normalized()
            rect = rect.intersected(QRectF(0, 0, self.mask.width, self.mask.height))
            if rect.width() >= 1 and rect.height() >= 1:
                self.mask.add_rect(rect)
        self._drag_start = self._drag_now = None
        self._refresh_overlay()
        self.region_changed.emit()

    def leaveEvent(self, _event: object) -> None:
        previous, self._cursor = self._cursor, None
        dirty = self._outline_rect(previous)
        if not dirty.isEmpty():
            self.update(dirty)

    # -- painting -------------------------------------------------------------------------------------
    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if self.image is None:
            self._paint_empty(painter)
            return
        target = self.image_rect()
        if self.image.hasAlphaChannel():
            checkerboard(painter, target)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom() < 1)
        painter.drawImage(target, self.image)
        if self._overlay is not None:
            painter.drawImage(target, self._overlay)
        elif self.mask is not None and self._drag_start is not None and self.tool in ("brush", "erase"):
            # Mid-stroke: the raw mask, as is (no scan of it here; the overlay replaces it on release).
            painter.setOpacity(OVERLAY_OPACITY)
            painter.drawImage(target, self.mask.image)
            painter.setOpacity(1.0)
        self._paint_tool(painter)
        painter.end()

    def _paint_empty(self, painter: QPainter) -> None:
        area = QRectF(self.rect()).adjusted(MARGIN * 2, MARGIN * 2, -MARGIN * 2, -MARGIN * 2)
        pen = QPen(self.palette().mid().color(), 2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRoundedRect(area, 12, 12)
        painter.setPen(self.palette().text().color())
        font = painter.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        painter.setFont(font)
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter, EMPTY_HINT)
        painter.end()

    def _paint_tool(self, painter: QPainter) -> None:
        if self.tool == "rect" and self._drag_start is not None and self._drag_now is not None:
            painter.setPen(QPen(QColor(255, 255, 255), 1, Qt.PenStyle.DashLine))
            painter.drawRect(QRectF(self.to_widget(self._drag_start), self.to_widget(self._drag_now)).normalized())
        elif self.tool in ("brush", "erase") and self._cursor is not None:
            radius = self.brush_size / 2 * self.zoom()
            painter.setPen(QPen(QColor(255, 255, 255) if self.tool == "brush" else QColor(255, 80, 80), 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(self._cursor, radius, radius)

"""Before/after: a split view with a slider, or two views side by side, sharing one zoom and position."""

from __future__ import annotations

from PyQt6.QtCore import QObject, QPointF, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QResizeEvent, QWheelEvent
from PyQt6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ui.canvas import checkerboard

ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.02, 32.0
SPLIT_GRAB_PX = 8
SLIDER_STEPS = 1000


class Viewport(QObject):
    """Zoom (screen pixels per output pixel; None = fit) and the output point at the view's centre."""

    changed = pyqtSignal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.zoom: float | None = None
        self.centre = QPointF()

    def effective(self, view: QSize, image: QSize) -> tuple[float, QPointF]:
        """(zoom, centre) for a view of this size: fit means the whole image, centred."""
        if self.zoom is None or image.isEmpty():
            if image.isEmpty() or view.isEmpty():
                return 1.0, QPointF()
            fit = min(view.width() / image.width(), view.height() / image.height())
            return fit, QPointF(image.width() / 2, image.height() / 2)
        return self.zoom, self.centre

    def set_fit(self) -> None:
        self.zoom = None
        self.changed.emit()

    def set_zoom(self, zoom: float, view: QSize, image: QSize, anchor: QPointF | None = None) -> None:
        """Zoom so that the output point under `anchor` (a view position; default its centre) stays put."""
        old_zoom, centre = self.effective(view, image)
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        middle = QPointF(view.width() / 2, view.height() / 2)
        offset = (anchor - middle) if anchor is not None else QPointF()
        under = centre + offset / old_zoom
        self.zoom, self.centre = zoom, under - offset / zoom
        self.changed.emit()

    def pan(self, delta: QPointF, view: QSize, image: QSize) -> None:
        zoom, centre = self.effective(view, image)
        self.zoom, self.centre = zoom, centre - delta / zoom
        self.changed.emit()


class ComparePane(QWidget):
    """Draws `before` (stretched to the output size) left of the split and `after` right of it."""

    split_moved = pyqtSignal(float)
    resized = pyqtSignal()

    def __init__(self, viewport: Viewport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewport = viewport
        viewport.changed.connect(self.update)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 160)
        self.before: QImage | None = None
        self.after: QImage | None = None
        self.out_size = QSize()
        self.split: float | None = 0.5  # None: only `after` (or only `before` when there is no after)
        self.labels = ("Before", "After")
        self._pan_from: QPointF | None = None
        self._dragging_split = False

    def set_images(self, before: QImage | None, after: QImage | None, out_size: QSize) -> None:
        self.before, self.after, self.out_size = before, after, QSize(out_size)
        self.update()

    def image_rect(self) -> QRectF:
        """The output image's rectangle in this pane's coordinates."""
        zoom, centre = self.viewport.effective(self.size(), self.out_size)
        left = self.width() / 2 - centre.x() * zoom
        top = self.height() / 2 - centre.y() * zoom
        return QRectF(left, top, self.out_size.width() * zoom, self.out_size.height() * zoom)

    def split_x(self) -> float:
        """The split line's x: a fraction of the pane's width, so it stays under the slider at any zoom."""
        return self.width() * (self.split if self.split is not None else 1.0)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.resized.emit()  # "fit" is a different zoom at every size

    # -- painting -------------------------------------------------------------------------------------
    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(40, 40, 40))
        if self.out_size.isEmpty() or (self.before is None and self.after is None):
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter,
                             "The result appears here.\nPress Upscale to make one.")
            return
        target = self.image_rect()
        zoom = target.width() / max(1, self.out_size.width())
        checkerboard(painter, target.intersected(QRectF(self.rect())))
        split_x = self.split_x()
        if self.before is not None:
            painter.save()
            if self.split is not None and self.after is not None:
                painter.setClipRect(QRectF(0, 0, max(0.0, split_x), self.height()))
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(target, self.before)
            painter.restore()
        if self.after is not None:
            painter.save()
            if self.split is not None and self.before is not None:
                painter.setClipRect(QRectF(split_x, 0, max(0.0, self.width() - split_x), self.height()))
            # Past 1:1, show the pixels themselves; below it, a smooth reduction.
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, zoom < 1 or
                                  self.after.width() < self.out_size.width())
            painter.drawImage(target, self.after)
            painter.restore()
        if self.split is not None and self.before is not None and self.after is not None:
            self._paint_split(painter, split_x)
        painter.end()

    def _paint_split(self, painter: QPainter, x: float) -> None:
        painter.setPen(QPen(QColor(255, 255, 255), 2))
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        painter.setBrush(QColor(255, 255, 255))
        painter.drawEllipse(QPointF(x, self.height() / 2), 7, 7)
        metrics = painter.fontMetrics()
        for text, right_side in ((self.labels[0], False), (self.labels[1], True)):
            width = metrics.horizontalAdvance(text) + 12
            left = x + 8 if right_side else x - 8 - width
            box = QRectF(left, 8, width, metrics.height() + 6)
            painter.fillRect(box, QColor(0, 0, 0, 160))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

    # -- mouse: drag pans (or moves the split line), the wheel zooms about the cursor ------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        if self.split is not None and abs(event.position().x() - self.split_x()) <= SPLIT_GRAB_PX:
            self._dragging_split = True
        else:
            self._pan_from = event.position()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._dragging_split and self.width() > 0:
            self.split_moved.emit(min(1.0, max(0.0, event.position().x() / self.width())))
        elif self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.viewport.pan(delta, self.size(), self.out_size)

    def mouseReleaseEvent(self, _event: QMouseEvent) -> None:
        self._pan_from, self._dragging_split = None, False

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        """Double click: 1:1 at that point, or back to fit."""
        if self.viewport.zoom == 1.0:
            self.viewport.set_fit()
        else:
            self.viewport.set_zoom(1.0, self.size(), self.out_size, event.position())

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            zoom, _ = self.viewport.effective(self.size(), self.out_size)
            self.viewport.set_zoom(zoom * ZOOM_STEP ** steps, self.size(), self.out_size, event.position())


class CompareView(QWidget):
    """The compare tab: mode buttons, Fit and 1:1, the split slider, and the panes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewport = Viewport(self)
        self.split_pane = ComparePane(self.viewport)
        self.left_pane = ComparePane(self.viewport)
        self.right_pane = ComparePane(self.viewport)
        self.left_pane.split = self.right_pane.split = None
        self.split_pane.split_moved.connect(lambda f: self.slider.setValue(round(f * SLIDER_STEPS)))

        self.split_button = QPushButton("Split")
        self.side_button = QPushButton("Side by side")
        modes = QButtonGroup(self)
        for button in (self.split_button, self.side_button):
            button.setCheckable(True)
            modes.addButton(button)
        self.split_button.setChecked(True)
        self.split_button.toggled.connect(self._show_mode)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("show the whole image (double-click the image to toggle 1:1)")
        self.fit_button.clicked.connect(self.viewport.set_fit)
        self.one_button = QPushButton("1:1")
        self.one_button.setToolTip("one result pixel per screen pixel; drag to pan, wheel to zoom")
        self.one_button.clicked.connect(self.zoom_one_to_one)
        self.zoom_label = QLabel()
        self.viewport.changed.connect(self._show_zoom)
        self.split_pane.resized.connect(self._show_zoom)
        self.right_pane.resized.connect(self._show_zoom)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setValue(SLIDER_STEPS // 2)
        self.slider.setToolTip("move the line between before (left) and after (right); or drag the line itself")
        self.slider.valueChanged.connect(self._set_split)

        bar = QHBoxLayout()
        for widget in (self.split_button, self.side_button, self.fit_button, self.one_button):
            bar.addWidget(widget)
        bar.addWidget(self.zoom_label)
        bar.addStretch(1)
        self.caption = QLabel()
        bar.addWidget(self.caption)
        side = QHBoxLayout()
        side.setSpacing(2)
        side.addWidget(self.left_pane)
        side.addWidget(self.right_pane)
        self.side_widget = QWidget()
        self.side_widget.setLayout(side)
        side.setContentsMargins(0, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.split_pane, 1)
        layout.addWidget(self.side_widget, 1)
        layout.addWidget(self.slider)
        self._show_mode(True)
        self._show_zoom()

    def set_images(self, before: QImage | None, after: QImage | None, out_size: QSize,
                   after_label: str = "After") -> None:
        """`before` is the input; `after` the result or a live preview (both drawn at `out_size`)."""
        self.split_pane.labels = ("Before", after_label)
        self.split_pane.set_images(before, after, out_size)
        self.left_pane.set_images(before, None, out_size)
        self.right_pane.set_images(None, after, out_size)
        self.caption.setText(f"{after_label}: {out_size.width()}×{out_size.height()}" if after is not None else "")
        self._show_zoom()

    def zoom_one_to_one(self) -> None:
        pane = self.split_pane if self.split_pane.isVisible() else self.right_pane
        self.viewport.set_zoom(1.0, pane.size(), pane.out_size)

    def _set_split(self, value: int) -> None:
        self.split_pane.split = value / SLIDER_STEPS
        self.split_pane.update()

    def _show_mode(self, split: bool) -> None:
        self.split_pane.setVisible(split)
        self.slider.setVisible(split)
        self.side_widget.setVisible(not split)

    def _show_zoom(self) -> None:
        pane = self.split_pane if not self.split_pane.isHidden() else self.right_pane
        zoom, _ = self.viewport.effective(pane.size(), pane.out_size)
        self.zoom_label.setText(("fit, " if self.viewport.zoom is None else "") + f"{zoom * 100:.0f} %")

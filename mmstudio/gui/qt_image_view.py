"""The large image view: fits and zooms, and lays an attention heatmap over the image."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

from mmstudio.overlay import SPOTLIGHT, overlay_layer

_OVERLAY_MAX_SIDE = 1024  # heatmaps are smooth: no need to build them at full photo size


def pil_to_qimage(image: Image.Image) -> QImage:
    rgba = image.convert("RGBA")
    data = rgba.tobytes("raw", "RGBA")
    qimage = QImage(data, rgba.width, rgba.height, rgba.width * 4, QImage.Format.Format_RGBA8888)
    return qimage.copy()  # own the pixels: `data` goes away


def heatmap_qimage(amap: np.ndarray, size: tuple[int, int], colormap: str) -> QImage:
    scale = min(1.0, _OVERLAY_MAX_SIDE / max(size))
    small = (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))
    colors, alpha = overlay_layer(amap, small, colormap)
    rgba = np.dstack([colors, (255 * alpha).round().astype(np.uint8)])
    return pil_to_qimage(Image.fromarray(rgba, mode="RGBA"))


class ImageView(QGraphicsView):
    zoom_changed = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(Qt.GlobalColor.darkGray)
        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay_item = QGraphicsPixmapItem()
        self._overlay_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._image_item)
        self.scene().addItem(self._overlay_item)
        self._fit = True
        self._image: Image.Image | None = None
        self._map: np.ndarray | None = None
        self.setToolTip("Scroll to zoom, drag to pan, double-click to fit")

    @property
    def image(self) -> Image.Image | None:
        return self._image

    @property
    def overlay_map(self) -> np.ndarray | None:
        return self._map

    def set_image(self, image: Image.Image | None) -> None:
        self._image = image
        self.set_overlay(None)
        if image is None:
            self._image_item.setPixmap(QPixmap())
            return
        self._image_item.setPixmap(QPixmap.fromImage(pil_to_qimage(image)))
        self.scene().setSceneRect(0, 0, image.width, image.height)
        self.fit()

    def set_overlay(self, amap: np.ndarray | None, colormap: str = SPOTLIGHT, opacity: float = 0.6) -> None:
        self._map = None if amap is None else np.asarray(amap)
        if amap is None or self._image is None:
            self._overlay_item.setVisible(False)
            return
        qimage = heatmap_qimage(amap, self._image.size, colormap)
        self._overlay_item.setPixmap(QPixmap.fromImage(qimage))
        self._overlay_item.setScale(self._image.width / qimage.width())
        self._overlay_item.setOpacity(opacity)
        self._overlay_item.setVisible(True)

    def set_opacity(self, opacity: float) -> None:
        self._overlay_item.setOpacity(opacity)

    def fit(self) -> None:
        self._fit = True
        if self._image is not None:
            self.fitInView(self._image_item, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom_changed.emit(self.transform().m11())

    def zoom(self, factor: float) -> None:
        self._fit = False
        current = self.transform().m11()
        factor = max(0.05 / current, min(factor, 40.0 / current))
        self.scale(factor, factor)
        self.zoom_changed.emit(self.transform().m11())

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt naming
        self.zoom(1.25 if event.angleDelta().y() > 0 else 0.8)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fit:
            self.fit()

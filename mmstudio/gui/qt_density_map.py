"""A map of many points drawn as a density image: a million points pan at the speed of one picture.

pyqtgraph's scatter item draws every point on every frame (137 ms a frame at a million points here); this
item draws one image of the points in view, binned at the view's pixel size. Panning and zooming move the
image with the view at once; when the view has settled for a moment the image is binned again for the new
range, so zooming in sharpens it down to single points. Picking (hover, click) finds the nearest point to
the cursor within a few pixels. `bench/map_frame.py` measures both items side by side.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QTimer

SETTLE_MS = 60  # after the last pan or zoom step, bin again for the new view
COLOUR = np.array([40, 110, 190], np.float32)


def binned(xy: np.ndarray, x0: float, x1: float, y0: float, y1: float, width: int, height: int) -> np.ndarray:
    """(height, width) counts of the points that fall in each pixel of the rectangle; row 0 at y0."""
    width, height = max(int(width), 1), max(int(height), 1)
    sx, sy = width / max(x1 - x0, 1e-12), height / max(y1 - y0, 1e-12)
    ix = np.floor((xy[:, 0] - x0) * sx).astype(np.int64)
    iy = np.floor((xy[:, 1] - y0) * sy).astype(np.int64)
    inside = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
    counts = np.bincount(iy[inside] * width + ix[inside], minlength=width * height)
    return counts.reshape(height, width)


def rgba(counts: np.ndarray) -> np.ndarray:
    """Counts as colour: one point faint, many strong (log scale), empty pixels transparent."""
    most = float(counts.max()) if counts.size else 0.0
    share = np.log1p(counts) / np.log1p(most) if most > 0 else np.zeros(counts.shape)
    image = np.zeros(counts.shape + (4,), np.uint8)
    image[..., :3] = (COLOUR * (1.15 - 0.5 * share[..., None])).clip(0, 255)
    image[..., 3] = np.where(counts > 0, 110 + 145 * share, 0)
    return image


class DensityMap:
    """The points of a plot as one image, binned again for each settled view; and the nearest point."""

    def __init__(self, plot):
        import pyqtgraph as pg

        self.plot = plot
        self.view = plot.getViewBox()
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(-1)  # under the rings and the star
        plot.addItem(self.image)
        self.xy = np.zeros((0, 2), np.float32)
        self.timer = QTimer(plot)
        self.timer.setSingleShot(True)
        self.timer.setInterval(SETTLE_MS)
        self.timer.timeout.connect(self.redraw)
        self.view.sigRangeChanged.connect(lambda *_: self.timer.start())

    def set_points(self, xy: np.ndarray) -> None:
        """The points to draw; `redraw` bins them (once the caller has framed the view: binning is the cost)."""
        self.xy = np.asarray(xy, np.float32)
        self.image.setVisible(len(self.xy) > 0)

    def frame(self) -> None:
        """Show all the points: the view set to their extent (the image has no bounds to frame by until it is
        drawn, and it is drawn for the view), then binned for it."""
        if len(self.xy):
            (x0, y0), (x1, y1) = self.xy.min(axis=0), self.xy.max(axis=0)
            self.view.setRange(xRange=(float(x0), float(x1)), yRange=(float(y0), float(y1)), padding=0.02)
        self.redraw()

    def redraw(self) -> None:
        self.timer.stop()  # drawn now: a pending settle would bin the same view again
        if not len(self.xy):
            return
        (x0, x1), (y0, y1) = self.view.viewRange()
        width, height = int(self.view.width()) or 800, int(self.view.height()) or 600  # 0 before first shown
        self.image.setImage(rgba(binned(self.xy, x0, x1, y0, y1, width, height)), autoLevels=False,
                            levels=(0, 255))
        self.image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))

    def nearest(self, x: float, y: float, pixels: float = 6.0) -> int | None:
        """The row of the point nearest to (x, y) in view coordinates, if within `pixels` on the screen."""
        if not len(self.xy):
            return None
        (x0, x1), (y0, y1) = self.view.viewRange()
        sx = max(float(self.view.width()), 1.0) / max(x1 - x0, 1e-12)
        sy = max(float(self.view.height()), 1.0) / max(y1 - y0, 1e-12)
        distance = ((self.xy[:, 0] - x) * sx) ** 2 + ((self.xy[:, 1] - y) * sy) ** 2
        row = int(np.argmin(distance))
        return row if distance[row] <= pixels ** 2 else None


def inside(xy: np.ndarray, rect: QRectF) -> np.ndarray:
    """Rows of the points within a rectangle of view coordinates."""
    x0, x1 = sorted((rect.left(), rect.right()))
    y0, y1 = sorted((rect.top(), rect.bottom()))
    return np.nonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))[0]


def in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Rows of the points inside a closed polygon ((M, 2) corners, view coordinates), by counting crossings
    of a ray to the right; only points within its bounding box are tested."""
    polygon = np.asarray(polygon, np.float64)
    if len(polygon) < 3:
        return np.zeros(0, np.int64)
    (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
    rows = np.nonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))[0]
    px, py = xy[rows, 0].astype(np.float64), xy[rows, 1].astype(np.float64)
    inside_ = np.zeros(len(rows), bool)
    for (ax, ay), (bx, by) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = ax + (py - ay) * (bx - ax) / (by - ay)
        inside_ ^= crosses & (px < at)
    return rows[inside_]


def selecting_view_box():
    """A ViewBox where Shift+drag draws a rectangle and reports it (view coordinates) on `selected`, and
    Ctrl+drag draws a free lasso and reports its corners on `lassoed`, instead of panning; a plain drag
    still pans and the wheel zooms. Made on demand: pyqtgraph is imported late."""
    import pyqtgraph as pg
    from PySide6.QtCore import Qt, Signal

    class SelectingViewBox(pg.ViewBox):
        selected = Signal(QRectF)
        lassoed = Signal(object)  # (M, 2) float array of corners

        def __init__(self):
            super().__init__()
            self.lasso: list[tuple[float, float]] = []
            self.lasso_line = pg.PlotCurveItem(pen=pg.mkPen(230, 120, 20, width=2, style=Qt.PenStyle.DashLine))
            self.lasso_line.setZValue(10)
            self.addItem(self.lasso_line, ignoreBounds=True)

        def mouseDragEvent(self, ev, axis=None):  # noqa: N802 - pyqtgraph's name
            keys = ev.modifiers()
            if ev.button() != Qt.MouseButton.LeftButton:
                super().mouseDragEvent(ev, axis)
            elif keys & Qt.KeyboardModifier.ShiftModifier:
                ev.accept()
                if ev.isFinish():
                    self.rbScaleBox.hide()
                    rect = QRectF(ev.buttonDownPos(ev.button()), ev.pos()).normalized()
                    self.selected.emit(self.childGroup.mapRectFromParent(rect))
                else:
                    self.updateScaleBox(ev.buttonDownPos(), ev.pos())
            elif keys & Qt.KeyboardModifier.ControlModifier:
                ev.accept()
                if ev.isStart():
                    start = self.mapToView(ev.buttonDownPos(ev.button()))
                    self.lasso = [(start.x(), start.y())]
                point = self.mapToView(ev.pos())
                self.lasso.append((point.x(), point.y()))
                corners = np.array(self.lasso + self.lasso[:1])
                self.lasso_line.setData(corners[:, 0], corners[:, 1])
                if ev.isFinish():
                    self.lasso_line.setData([], [])
                    self.lassoed.emit(np.array(self.lasso))
                    self.lasso = []
            else:
                super().mouseDragEvent(ev, axis)

    return SelectingViewBox()

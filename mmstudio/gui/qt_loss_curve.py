"""A small line plot of training loss (and eval points) drawn with QPainter."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QWidget


class LossCurve(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.points: list[tuple[float, float]] = []
        self.total: float = 0
        self.setToolTip("Training loss by step")

    def set_points(self, points, total: float = 0) -> None:
        self.points = [(float(x), float(y)) for x, y in points]
        self.total = float(total or (self.points[-1][0] if self.points else 0))
        self.update()

    def add_point(self, step: float, loss: float, total: float) -> None:
        self.points.append((float(step), float(loss)))
        self.total = float(total)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt naming
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(44, 8, -8, -22)
        painter.fillRect(self.rect(), QColor("#fafafa"))
        painter.setPen(QPen(QColor("#999")))
        painter.drawRect(area)
        if len(self.points) < 1:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "No training yet")
            return
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        x_max = max(self.total, max(xs), 1.0)
        y_min, y_max = min(ys), max(ys)
        if y_max - y_min < 1e-9:
            y_min, y_max = y_min - 0.5, y_max + 0.5

        def at(x, y) -> QPointF:
            return QPointF(area.left() + area.width() * x / x_max,
                           area.bottom() - area.height() * (y - y_min) / (y_max - y_min))

        path = QPainterPath(at(*self.points[0]))
        for point in self.points[1:]:
            path.lineTo(at(*point))
        painter.setPen(QPen(QColor("#1565c0"), 2))
        painter.drawPath(path)
        painter.setPen(QPen(QColor("#444")))
        painter.drawText(QRectF(0, area.top() - 6, 42, 14), Qt.AlignmentFlag.AlignRight, f"{y_max:.3g}")
        painter.drawText(QRectF(0, area.bottom() - 8, 42, 14), Qt.AlignmentFlag.AlignRight, f"{y_min:.3g}")
        painter.drawText(QRectF(area.left(), area.bottom() + 4, area.width(), 16), Qt.AlignmentFlag.AlignRight,
                         f"step {int(xs[-1])} of {int(x_max)}")

"""A small line plot of training loss and eval loss by step, drawn with QPainter."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QWidget

TRAIN_COLOR, EVAL_COLOR = "#1565c0", "#e65100"


class LossCurve(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.points: list[tuple[float, float]] = []
        self.eval_points: list[tuple[float, float]] = []
        self.total: float = 0
        self.setToolTip("Training loss (blue) and eval loss (orange) by step")

    def set_points(self, points, total: float = 0, eval_points=()) -> None:
        self.points = [(float(x), float(y)) for x, y in points]
        self.eval_points = [(float(x), float(y)) for x, y in eval_points]
        last = max([p[0] for p in self.points + self.eval_points], default=0)
        self.total = float(total or last)
        self.update()

    def add_point(self, step: float, loss: float, total: float) -> None:
        self.points.append((float(step), float(loss)))
        self.total = float(total)
        self.update()

    def add_eval_point(self, step: float, loss: float) -> None:
        self.eval_points.append((float(step), float(loss)))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt naming
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(68, 8, -8, -22)
        painter.fillRect(self.rect(), QColor("#fafafa"))
        painter.setPen(QPen(QColor("#999")))
        painter.drawRect(area)
        every = self.points + self.eval_points
        if not every:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "No training yet")
            return
        x_max = max(self.total, max(p[0] for p in every), 1.0)
        y_min, y_max = min(p[1] for p in every), max(p[1] for p in every)
        if y_max - y_min < 1e-9:
            y_min, y_max = y_min - 0.5, y_max + 0.5

        def at(x, y) -> QPointF:
            return QPointF(area.left() + area.width() * x / x_max,
                           area.bottom() - area.height() * (y - y_min) / (y_max - y_min))

        for points, color in ((self.points, TRAIN_COLOR), (self.eval_points, EVAL_COLOR)):
            if not points:
                continue
            path = QPainterPath(at(*points[0]))
            for point in points[1:]:
                path.lineTo(at(*point))
            painter.setPen(QPen(QColor(color), 2))
            painter.drawPath(path)
            if points is self.eval_points:  # few points: mark each one
                painter.setBrush(QColor(color))
                for point in points:
                    painter.drawEllipse(at(*point), 3, 3)
                painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor("#444")))
        painter.drawText(QRectF(0, area.top() - 6, 64, 14), Qt.AlignmentFlag.AlignRight, f"{y_max:.3g}")
        painter.drawText(QRectF(0, area.bottom() - 8, 64, 14), Qt.AlignmentFlag.AlignRight, f"{y_min:.3g}")
        last = int(max(p[0] for p in every))
        painter.drawText(QRectF(area.left(), area.bottom() + 4, area.width(), 16), Qt.AlignmentFlag.AlignRight,
                         f"step {last} of {int(x_max)}")
        legend = QRectF(area.left() + 6, area.top() + 4, 200, 14)
        painter.setPen(QPen(QColor(TRAIN_COLOR)))
        painter.drawText(legend, Qt.AlignmentFlag.AlignLeft, "train loss")
        if self.eval_points:
            painter.setPen(QPen(QColor(EVAL_COLOR)))
            painter.drawText(legend.translated(70, 0), Qt.AlignmentFlag.AlignLeft, "eval loss")

"""Training loss and eval loss by step, drawn with pyqtgraph (the Explore map's plotting library): hover
reads a point's value, the wheel zooms, right-click offers pyqtgraph's view menu and export.

pyqtgraph is imported when the curve is first shown (0.3-0.4 s that the app's start-up does not pay);
points that come before are kept and drawn then.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

TRAIN_COLOR, EVAL_COLOR = "#1565c0", "#e65100"


class LossCurve(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.points: list[tuple[float, float]] = []
        self.eval_points: list[tuple[float, float]] = []
        self.total: float = 0
        self.setToolTip("Training loss (blue) and eval loss (orange) by step")
        self.plot = None  # built on first show
        self._train = self._eval = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.empty = QLabel("No training yet")
        self._layout.addWidget(self.empty)

    def set_points(self, points, total: float = 0, eval_points=()) -> None:
        self.points = [(float(x), float(y)) for x, y in points]
        self.eval_points = [(float(x), float(y)) for x, y in eval_points]
        last = max([p[0] for p in self.points + self.eval_points], default=0)
        self.total = float(total or last)
        self._redraw()

    def add_point(self, step: float, loss: float, total: float) -> None:
        self.points.append((float(step), float(loss)))
        self.total = float(total)
        self._redraw()

    def add_eval_point(self, step: float, loss: float) -> None:
        self.eval_points.append((float(step), float(loss)))
        self._redraw()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self.plot is None:
            self._build()
            self._redraw()

    def _build(self) -> None:
        import pyqtgraph as pg

        self.plot = pg.PlotWidget(background="#fafafa")
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # "0.02", not "20 (x0.001)"
        self.plot.addLegend(offset=(-8, 8))
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self._train = self.plot.plot([], [], pen=pg.mkPen(TRAIN_COLOR, width=2), name="train loss")
        self._eval = self.plot.plot([], [], pen=pg.mkPen(EVAL_COLOR, width=2), symbol="o", symbolSize=6,
                                    symbolBrush=EVAL_COLOR, symbolPen=None, name="eval loss")
        self._layout.addWidget(self.plot)

    def _redraw(self) -> None:
        self.empty.setVisible(not (self.points or self.eval_points))
        if self.plot is None:
            return
        self.plot.setVisible(bool(self.points or self.eval_points))
        for item, points in ((self._train, self.points), (self._eval, self.eval_points)):
            item.setData([p[0] for p in points], [p[1] for p in points])
        self.plot.setXRange(0, max(self.total, max((p[0] for p in self.points + self.eval_points), default=1), 1),
                            padding=0.02)

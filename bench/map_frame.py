"""The Explore map at 100k and 1M points: time to draw a frame while panning, scatter item against density image.

    QT_QPA_PLATFORM=offscreen python bench/map_frame.py [--sizes 100000,1000000] [--frames 30]

A plot widget of 800 x 600 pixels, offscreen, with the points of a clustered layout. Each frame moves the
view by 1 % and renders the widget (QWidget.grab: what a screen refresh costs). Side by side in one run:
pyqtgraph's scatter item (every point drawn each frame; what the map uses up to
explore_panel.DENSE_FROM points) and the density image (mmstudio/gui/qt_density_map.py, above it). For the
density image, also the time to bin the points again once the view settles (once per pan or zoom, not
per frame). Goal: a frame <= 50 ms at 1M points.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def layout(count: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((max(count // 50, 1), 2)) * 3
    return (centres[rng.integers(0, len(centres), count)] + 0.3 * rng.standard_normal((count, 2))).astype(np.float32)


def frames(widget, count: int) -> list[float]:
    from PySide6.QtWidgets import QApplication

    view = widget.getViewBox()
    times = []
    for _ in range(count):
        (x0, x1), _ = view.viewRange()
        shift = 0.01 * (x1 - x0)
        started = time.perf_counter()
        view.setXRange(x0 + shift, x1 + shift, padding=0)
        widget.grab()
        QApplication.processEvents()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from mmstudio.gui.qt_density_map import DensityMap

    app = QApplication.instance() or QApplication([])
    print(f"800 x 600 offscreen, {args.frames} frames of panning; ms a frame, median / worst")
    print(f"{'points':>10} {'scatter item':>16} {'density image':>16} {'ratio':>6} {'re-bin':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        xy = layout(size)
        results = []
        for kind in ("scatter", "density"):
            widget = pg.PlotWidget(background="w")
            widget.resize(800, 600)
            widget.show()
            if kind == "scatter":
                item = pg.ScatterPlotItem(size=9, pen=pg.mkPen(255, 255, 255, 160), brush=pg.mkBrush(40, 110, 190))
                item.setData(x=xy[:, 0], y=xy[:, 1])
                widget.addItem(item)
            else:
                density = DensityMap(widget)
                density.timer.stop()
                density.timer.setInterval(10**6)  # panning frames: no re-binning in between (measured apart)
                density.set_points(xy)
            if kind == "density":
                density.frame()
            else:
                widget.autoRange()
            app.processEvents()
            widget.grab()
            times = frames(widget, args.frames)
            results.append((statistics.median(times) * 1e3, max(times) * 1e3))
            if kind == "density":
                started = time.perf_counter()
                for _ in range(5):
                    density.redraw()
                rebin = (time.perf_counter() - started) / 5 * 1e3
            widget.close()
            widget.deleteLater()
            app.processEvents()
        (s_med, s_max), (d_med, d_max) = results
        print(f"{size:>10,} {s_med:>7.1f} / {s_max:<6.1f} {d_med:>7.1f} / {d_max:<6.1f} {s_med / d_med:>5.1f}x "
              f"{rebin:>6.1f}ms", flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # PySide6 6.x can crash tearing down many deleted plot widgets at exit; the figures are out

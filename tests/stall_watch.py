"""Drive the real main window through everyday work and measure how long its event loop ever stalls.

A 5 ms heartbeat timer runs on the GUI thread; the longest gap between two of its
beats during a scenario is how long the window could not repaint or take a click.
Used by tests/test_gui_stall.py (a small collection, a loose bound) and
bench/gui_stall.py (1,000 images and rows, the 50 ms goal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QCoreApplication, QElapsedTimer, QEventLoop, QTimer

from mmstudio.models.base import Task

BEAT_MS = 5


class Heartbeat:
    """Records the gaps between beats of a timer on the GUI thread while `measuring`."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(BEAT_MS)
        self.timer.timeout.connect(self._beat)
        self.gaps: list[float] = []
        self._last: int | None = None

    def start(self) -> None:
        self.gaps = []
        self._last = None
        self.clock.start()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.gaps

    def _beat(self) -> None:
        now = self.clock.nsecsElapsed()
        if self._last is not None:
            self.gaps.append((now - self._last) / 1e6)
        self._last = now


def pump_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run the event loop (as the app does) until `condition` holds."""
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout_s:.0f} s")
        QTimer.singleShot(10, loop.quit)
        loop.exec()


@dataclass
class Stall:
    scenario: str
    seconds: float
    gaps: list[float] = field(default_factory=list)

    @property
    def longest(self) -> float:
        return max(self.gaps, default=0.0)

    def over(self, ms: float) -> int:
        return sum(1 for gap in self.gaps if gap > ms)

    def p99(self) -> float:
        return float(np.percentile(self.gaps, 99)) if self.gaps else 0.0


@dataclass
class Collection:
    images: Path  # a folder of scenes
    dataset: Path  # a training set with a row per scene
    count: int


def make_collection(root: Path, count: int, *, size: int = 128, workers: int = 2) -> Collection:
    from mmstudio.world import generate_dataset

    dataset = generate_dataset(root / "dataset", count, seed=11, size=size, workers=workers)
    return Collection(images=dataset / "images", dataset=dataset, count=count)


def run_scenarios(window, collection: Collection, out: Path, *, timeout_s: float = 900) -> list[Stall]:
    """The scenarios of issue 17, in order, on a shown MainWindow; one Stall each.

    Model switching loads the model the stopped job published, then the one before it.
    """
    heart = Heartbeat()
    results: list[Stall] = []

    def measure(name: str, start: Callable[[], object], done: Callable[[], bool]) -> None:
        QCoreApplication.processEvents()
        heart.start()
        began = time.monotonic()
        start()
        pump_until(done, timeout_s, name)
        results.append(Stall(name, time.monotonic() - began, list(heart.stop())))

    gallery, captions = window.gallery, window.caption_panel
    n = collection.count
    # The app starts importing torch at launch; loading a shared library of 300+ MB holds the GIL,
    # which no thread can avoid. Measured on its own, so the rows after it show the window at work.
    measure("start-up: import torch, load the caption model", lambda: window.client.warm_up(Task.CAPTION),
            lambda: bool(window.client.loaded_models()))
    measure(f"open a folder of {n} images", lambda: window.add_paths([str(collection.images)]),
            lambda: gallery.loaded_count == n)  # not refs(): polling must not load the thread it times
    measure(f"caption all {n} images", lambda: captions.caption_all(gallery.refs()),
            lambda: not captions.batch_running and len(captions.results) >= n)

    train = window.train_panel
    window.tabs.setCurrentWidget(train)
    train.task.setCurrentIndex(train.task.findData(Task.CAPTION))
    train.data.setText(str(collection.dataset))
    train.steps.setValue(2000)
    train.batch.setValue(8)
    train.out.setText(str(out / "run"))
    box = {}
    measure(f"check data ({n} rows)", lambda: box.setdefault("check", train.check()),
            lambda: box["check"] is not None and box["check"].done)

    def launch() -> None:
        box["launch"] = train.launch()

    def trained_then_stopped() -> bool:
        launching = box["launch"]
        if launching is None or launching.error is not None:
            raise AssertionError(f"launch refused: {train.report.text()}")
        record = train.selected() if launching.done else None
        if record is None:
            return False
        if not box.get("stopped"):
            if record.curve:  # it trains: now stop it (a checkpoint, then the end)
                box["stopped"] = True
                train.stop_button.click()
            return False
        return record.id not in train.processes

    measure("launch a job, train, stop it", launch, trained_then_stopped)

    search = window.search_panel
    window.tabs.setCurrentWidget(search)
    search.query.setText("a small red circle")
    measure(f"search over {n} images", search.search, lambda: not search.pending and bool(search.hits))

    before = window.models[Task.CAPTION]

    def switch(name: str) -> Callable[[], None]:
        return lambda: box.__setitem__("load", window.load_model(Task.CAPTION, name))

    measure("switch the caption model", switch(str(out / "run")), lambda: box["load"].done)
    measure("switch it back", switch(before), lambda: box["load"].done)
    return results


def table(stalls: list[Stall]) -> str:
    lines = ["| scenario | seconds | beats | longest gap (ms) | p99 (ms) | gaps > 50 ms |",
             "|---|---|---|---|---|---|"]
    for s in stalls:
        lines.append(f"| {s.scenario} | {s.seconds:.1f} | {len(s.gaps)} | {s.longest:.0f} | {s.p99():.0f} | "
                     f"{s.over(50)} |")
    return "\n".join(lines)

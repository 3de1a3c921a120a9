"""Startup milestones, for the startup benchmark and for anyone asking why the app starts slowly.

With MMSTUDIO_TRACE_STARTUP=FILE the app appends one JSON line per milestone to FILE:
the window's first paint, and the first caption that arrives. Times are wall-clock
(time.time()), so the process that started the app can subtract its own start time.
With MMSTUDIO_TRACE_STARTUP_EXIT=1 the app quits after the first caption.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QTimer

from mmstudio.requests import CaptionOutcome

TRACE_ENV = "MMSTUDIO_TRACE_STARTUP"
EXIT_ENV = "MMSTUDIO_TRACE_STARTUP_EXIT"


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class StartupTrace(QObject):
    def __init__(self, window, path: Path, quit_after_caption: bool):
        super().__init__(window)
        self._path = Path(path)
        self._quit = quit_after_caption
        self._painted = False
        self._captioned = False
        window.installEventFilter(self)
        window.caption_panel.captioned.connect(self._on_finished)
        self._write("window-created")

    def _write(self, event: str, **extra) -> None:
        line = json.dumps({"event": event, "time": time.time(), "peak_rss_mb": round(peak_rss_mb(), 1), **extra})
        with self._path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if not self._painted and event.type() == QEvent.Type.Paint:
            self._painted = True
            self._write("window-shown")
        return False

    def _on_finished(self, outcome) -> None:
        if self._captioned or not isinstance(outcome, CaptionOutcome):
            return
        self._captioned = True
        item = outcome.items[0] if outcome.items else None
        caption = item.result.caption if item is not None and item.result is not None else None
        self._write("first-caption", caption=caption, error=item.error if item is not None else "no items")
        if self._quit:
            QTimer.singleShot(0, self.parent().close)


def install_from_environment(window) -> StartupTrace | None:
    target = os.environ.get(TRACE_ENV)
    if not target:
        return None
    return StartupTrace(window, Path(target), os.environ.get(EXIT_ENV) == "1")

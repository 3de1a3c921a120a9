"""The self-test's window check: the main window opens and shows its first screen."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from mmstudio.gui.main_window import MainWindow
from mmstudio.gui.qt_settings import Settings
from mmstudio.jobs import JobStore


def open_main_window() -> str:
    app = QApplication.instance() or QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(QSettings(str(Path(folder) / "s.ini"), QSettings.Format.IniFormat))
        window = MainWindow(settings=settings, job_store=JobStore(Path(folder) / "jobs.json"))
        window.show()
        app.processEvents()
        shown = window.isVisible() and window.stack.currentWidget() is window.welcome_page
        window.close()
        app.processEvents()
    assert shown, "the window did not show its first screen"
    return f"Qt platform {app.platformName()}"

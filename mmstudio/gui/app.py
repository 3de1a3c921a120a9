"""Starting the desktop app."""

from __future__ import annotations

import sys

from mmstudio import __version__, preload
from mmstudio.models.base import Task
from mmstudio.resources import resources_dir


def run_app(images: list[str] | None = None) -> int:
    preload.start()  # torch and transformers import while Qt starts and the window paints
    from PySide6.QtCore import QCoreApplication, QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from mmstudio.gui.main_window import MainWindow
    from mmstudio.gui.qt_startup_trace import install_from_environment

    QCoreApplication.setOrganizationName("mmstudio")
    QCoreApplication.setApplicationName("mmstudio")
    QCoreApplication.setApplicationVersion(__version__)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setDesktopFileName("mmstudio")  # Wayland and docks match the window to mmstudio.desktop and its icon
    icon = resources_dir() / "icons" / "mmstudio.png"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    window = MainWindow()
    install_from_environment(window)
    window.show()
    # torch and transformers take seconds to import: start on the worker thread once the window has painted,
    # so the first caption is ready sooner and the window is not held up.
    QTimer.singleShot(0, lambda: window.client.warm_up(Task.CAPTION))
    if images:
        window.add_paths(images)
    return app.exec()

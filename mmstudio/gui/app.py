"""Starting the desktop app."""

from __future__ import annotations

import sys

from mmstudio import __version__


def run_app(images: list[str] | None = None) -> int:
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from mmstudio.gui.main_window import MainWindow
    from mmstudio.resources import resources_dir

    QCoreApplication.setOrganizationName("mmstudio")
    QCoreApplication.setApplicationName("mmstudio")
    QCoreApplication.setApplicationVersion(__version__)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setDesktopFileName("mmstudio")  # Wayland and docks match the window to mmstudio.desktop and its icon
    icon = resources_dir() / "icons" / "mmstudio.png"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    window = MainWindow()
    window.show()
    if images:
        window.add_paths(images)
    return app.exec()

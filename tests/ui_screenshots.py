"""Screenshots of real Qt widgets, rendered offscreen and grabbed: pictures that are not Shapes World.

A light window with a few small coloured controls is the non-Shapes picture nearest to a scene (a pale,
near-uniform background with a few things on it), so the out-of-world score must flag these too. Needs a
QApplication; `screenshots(count, seed)` builds forms, tables, editors, trees, message boxes and sliders of
random sizes, half of them in a dark palette, and returns them as RGB PIL images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tests.out_of_world_images import WORDS

CODE = """def caption(images, *, attention=False):
    embeds = self.image_embeds(images)
    for b in range(batch):
        ids = sequences[b].tolist()[1:]
        text = self.tokenizer.decode(ids)
    return results  # one per image
"""


def _words(rng: np.random.Generator, count: int) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), count))


def _form(rng: np.random.Generator) -> QWidget:
    widget = QWidget()
    form = QFormLayout(widget)
    for _ in range(int(rng.integers(3, 8))):
        kind = int(rng.integers(3))
        field = QLineEdit(_words(rng, 2)) if kind == 0 else QCheckBox(_words(rng, 3)) if kind == 1 else QComboBox()
        if isinstance(field, QComboBox):
            field.addItems([_words(rng, 1) for _ in range(3)])
        form.addRow(_words(rng, 1).title() + ":", field)
    form.addRow(QPushButton("Cancel"), QPushButton("Apply"))
    return widget


def _table(rng: np.random.Generator) -> QWidget:
    rows, columns = int(rng.integers(5, 20)), int(rng.integers(2, 6))
    table = QTableWidget(rows, columns)
    table.setHorizontalHeaderLabels([_words(rng, 1) for _ in range(columns)])
    for r in range(rows):
        for c in range(columns):
            table.setItem(r, c, QTableWidgetItem(f"{rng.uniform(0, 1000):.2f}" if c else _words(rng, 2)))
    return table


def _editor(rng: np.random.Generator) -> QWidget:
    editor = QPlainTextEdit(CODE * int(rng.integers(1, 4)) if rng.random() < 0.5 else
                            "\n".join(_words(rng, int(rng.integers(4, 10))) for _ in range(30)))
    return editor


def _tree(rng: np.random.Generator) -> QWidget:
    if rng.random() < 0.5:
        listing = QListWidget()
        listing.addItems([f"{_words(rng, 1)}_{i}.png" for i in range(int(rng.integers(5, 25)))])
        return listing
    tree = QTreeWidget()
    tree.setHeaderLabels(["Name", "Size", "Kind"])
    for _ in range(int(rng.integers(3, 8))):
        parent = QTreeWidgetItem([_words(rng, 1), f"{int(rng.integers(1, 900))} kB", "folder"])
        for _ in range(int(rng.integers(0, 4))):
            parent.addChild(QTreeWidgetItem([_words(rng, 1) + ".txt", f"{int(rng.integers(1, 90))} kB", "file"]))
        tree.addTopLevelItem(parent)
    tree.expandAll()
    return tree


def _message(rng: np.random.Generator) -> QWidget:
    widget = QWidget()
    layout = QVBoxLayout(widget)
    title = QLabel(f"<h2>{_words(rng, 3).title()}</h2>")
    body = QLabel(_words(rng, 30))
    body.setWordWrap(True)
    layout.addWidget(title)
    layout.addWidget(body)
    buttons = QGridLayout()
    for i, label in enumerate(("OK", "Cancel", "Help")[: int(rng.integers(1, 4))]):
        buttons.addWidget(QPushButton(label), 0, i)
    layout.addLayout(buttons)
    return widget


def _controls(rng: np.random.Generator) -> QWidget:
    tabs = QTabWidget()
    for _ in range(int(rng.integers(2, 5))):
        page = QWidget()
        layout = QVBoxLayout(page)
        for _ in range(int(rng.integers(2, 6))):
            if rng.random() < 0.5:
                bar = QProgressBar()
                bar.setValue(int(rng.integers(0, 101)))
                layout.addWidget(bar)
            else:
                slider = QSlider()
                slider.setOrientation(slider.orientation().Horizontal)
                slider.setValue(int(rng.integers(0, 100)))
                layout.addWidget(slider)
        layout.addWidget(QLabel(_words(rng, 6)))
        tabs.addTab(page, _words(rng, 1))
    return tabs


BUILDERS = (_form, _table, _editor, _tree, _message, _controls)


def _dark(widget: QWidget) -> None:
    palette = widget.palette()
    for role, color in ((QPalette.ColorRole.Window, "#2b2b2b"), (QPalette.ColorRole.Base, "#1e1e1e"),
                        (QPalette.ColorRole.Text, "#dddddd"), (QPalette.ColorRole.WindowText, "#dddddd"),
                        (QPalette.ColorRole.Button, "#3c3f41"), (QPalette.ColorRole.ButtonText, "#dddddd")):
        palette.setColor(role, QColor(color))
    widget.setPalette(palette)


def grab(widget: QWidget) -> Image.Image:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    data = bytes(image.constBits())[: image.bytesPerLine() * height]
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, image.bytesPerLine())
    return Image.fromarray(rows[:, : width * 3].reshape(height, width, 3).copy(), "RGB")


def screenshots(count: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    shots = []
    for i in range(count):
        widget = BUILDERS[i % len(BUILDERS)](rng)
        if rng.random() < 0.5:
            _dark(widget)
        widget.resize(int(rng.integers(220, 640)), int(rng.integers(160, 480)))
        widget.show()  # laid out and painted as on a screen (tab pages stay empty until shown)
        QApplication.processEvents()
        shots.append(grab(widget))
        widget.close()
        widget.deleteLater()
    return shots

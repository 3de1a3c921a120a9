"""Duplicates panel: groups of exact and near copies among the gallery's pictures or a folder's, side by side;
keep one, move the others to the Trash or a folder, and undo."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QFile, QSize, QStandardPaths, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from mmstudio.duplicates import DEFAULT_THRESHOLD, DuplicateReport, find_duplicates
from mmstudio.errors import MMStudioError
from mmstudio.imaging import iter_image_files, load_image
from mmstudio.storage import check_writable_folder

THUMB = 80
CARD = QSize(104, 156)  # a card of the grid: thumbnail, then name, size, likeness and the keep mark
_PATH = Qt.ItemDataRole.UserRole
_TEXT = Qt.ItemDataRole.UserRole + 1  # a card's text without its keep or moved mark


@dataclass(frozen=True)
class Scan:
    report: DuplicateReport
    thumbnails: dict  # image path -> a small PIL picture


def scan(paths: list[str], threshold: float, cancel) -> Scan:
    """The groups, with a thumbnail of each member: made here, off the GUI thread, as the pictures are read."""
    report = find_duplicates(paths, threshold=threshold, cancel=cancel)
    thumbnails = {}
    for group in report.groups:
        for member in group.members:
            cancel()
            try:
                image = load_image(member.image)
            except MMStudioError:
                continue  # gone or broken since: its card says so without a picture
            image.thumbnail((THUMB, THUMB))
            thumbnails[member.image] = image
    return Scan(report, thumbnails)


def _icon(image: Image.Image | None) -> QIcon:
    if image is None:
        return QIcon()
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    qimage = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()
    return QIcon(QPixmap.fromImage(qimage))


def _trash(path: str) -> str:
    """Move a file to the system Trash; where it went (to undo). OSError says why it could not."""
    if sys.platform.startswith("linux"):  # Qt gives up where the freedesktop Trash folders do not exist yet
        trash = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)) / "Trash"
        for sub in ("files", "info"):
            (trash / sub).mkdir(parents=True, exist_ok=True)
    handle = QFile(path)
    if not handle.moveToTrash():
        raise OSError(f"{path}: the system Trash refused it ({handle.errorString()}); move it to a folder instead")
    return handle.fileName()


class DuplicatesPanel(QWidget):
    message = Signal(str)
    error = Signal(str)
    image_chosen = Signal(str)  # a gallery key (a path) the user clicked
    moved = Signal(list)  # paths moved away (the gallery lets go of them)
    restored = Signal(list)  # paths Undo put back

    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client
        self._gallery_refs = lambda: []
        self.scan: Scan | None = None
        self.ticket = None
        self.moves: list[list[tuple[str, str, str]]] = []  # undo stack: per action, (from, to, trash info file)
        self.gone: set[str] = set()  # pictures moved away (their cards are greyed)

        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.5, 1.0)
        self.threshold.setDecimals(2)
        self.threshold.setSingleStep(0.01)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.threshold.setPrefix("alike ≥ ")
        self.threshold.setToolTip("How alike near copies must be (1: the same picture). Lower finds more, "
                                  "and more that are only similar.")
        self.gallery_button = QPushButton("The gallery")
        self.gallery_button.setToolTip("Look for copies among the pictures open in the gallery")
        self.gallery_button.clicked.connect(self.find_in_gallery)
        self.folder_button = QPushButton("A folder…")
        self.folder_button.setToolTip("Look for copies among every picture under a folder")
        self.folder_button.clicked.connect(self._choose_folder)
        self.undo_button = QPushButton("Undo move")
        self.undo_button.setEnabled(False)
        self.undo_button.setToolTip("Put the pictures of the last move back where they were")
        self.undo_button.clicked.connect(self.undo)
        self.status = QLabel("Exact copies (the same pixels) and near copies (resized, re-compressed, lightly "
                             "cropped). Nothing is deleted: the others go to the Trash or a folder, and Undo "
                             "brings them back.")
        self.status.setWordWrap(True)
        self.groups_box = QWidget()
        self.groups_layout = QVBoxLayout(self.groups_box)
        self.groups_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.groups_box)

        row = QHBoxLayout()
        row.addWidget(QLabel("Find copies in"))
        row.addWidget(self.gallery_button)
        row.addWidget(self.folder_button)
        row.addStretch(1)
        settings = QHBoxLayout()
        settings.addWidget(self.threshold)
        settings.addStretch(1)
        settings.addWidget(self.undo_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Duplicates — pictures that are copies of one another"))
        layout.addLayout(row)
        layout.addLayout(settings)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)

    def set_gallery_source(self, refs_callable) -> None:
        self._gallery_refs = refs_callable

    # ----------------------------------------------------------------- finding

    def find_in_gallery(self) -> None:
        paths = [str(ref.path) for ref in self._gallery_refs() if ref.path is not None]
        if len(paths) < 2:
            self.message.emit("Open at least two pictures from files first (pasted pictures have no file to move).")
            return
        self.find(paths, "the gallery")

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Find duplicates in")
        if folder:
            self.find_in_folder(folder)

    def find_in_folder(self, folder: str) -> None:
        # Listing a folder tree reads the disk: the background call does it with the rest.
        self.find(None, folder)

    def find(self, paths: list[str] | None, where: str) -> None:
        if self.ticket is not None and not self.ticket.done:
            self.ticket.cancel()
        threshold = self.threshold.value()

        def work(cancel):
            names = paths if paths is not None else [str(p) for p in iter_image_files([where])]
            return scan(names, threshold, cancel)

        self.status.setText(f"Looking for copies in {where}…")
        self.ticket = ticket = self.client.run_cancellable(f"Finding duplicates in {where}", work)
        ticket.finished.connect(lambda result: self.show_scan(result, where) if ticket is self.ticket else None)
        ticket.failed.connect(lambda exc: self.error.emit(f"Could not look for duplicates in {where}: {exc}"))
        ticket.cancelled.connect(lambda: self.status.setText("Stopped."))

    def show_scan(self, result: Scan, where: str) -> None:
        self.scan = result
        self.gone.clear()
        while self.groups_layout.count() > 1:
            item = self.groups_layout.takeAt(0)
            item.widget().deleteLater()
        report = result.report
        for number, group in enumerate(report.groups, start=1):
            self.groups_layout.insertWidget(number - 1, self._group_widget(number, group))
        copies = sum(len(g.members) - 1 for g in report.groups)
        unreadable = f"; {len(report.failed)} could not be read" if report.failed else ""
        self.status.setText(f"{report.pictures} pictures in {where}: {len(report.groups)} groups, {copies} copies"
                            f"{unreadable}. In each group the largest is kept unless you click another.")

    def _group_widget(self, number: int, group) -> QGroupBox:
        kind = "exact copies" if group.exact else "near copies"
        box = QGroupBox(f"Group {number} · {len(group.members)} pictures · {kind}")
        cards = _Cards()
        for member in group.members:
            how = "same pixels" if member.exact else f"{member.similarity:.2f} alike"
            item = QListWidgetItem(_icon(self.scan.thumbnails.get(member.image)), "")
            item.setData(_PATH, member.image)
            item.setData(_TEXT, f"{Path(member.image).name}\n{member.width}×{member.height}\n{how}")
            item.setToolTip(f"{member.image}\nClick to keep this one and show it")
            cards.addItem(item)
        cards.itemSelectionChanged.connect(lambda: _label(cards))
        cards.setCurrentRow(0)  # the largest is kept unless the user picks another
        cards.itemClicked.connect(lambda item: self.image_chosen.emit(item.data(_PATH)))
        to_trash = QPushButton("Move the others to the Trash")
        to_trash.clicked.connect(lambda: self.move_others(box, None))
        to_folder = QPushButton("To a folder…")
        to_folder.setToolTip("Move the others to a folder you choose (a file of the same name there is kept)")
        to_folder.clicked.connect(lambda: self._move_to_chosen_folder(box))
        actions = QHBoxLayout()
        actions.addWidget(to_trash)
        actions.addWidget(to_folder)
        actions.addStretch(1)
        layout = QVBoxLayout(box)
        layout.addWidget(cards)
        layout.addLayout(actions)
        box.setProperty("cards", cards)
        return box

    # ----------------------------------------------------------------- moving

    def _move_to_chosen_folder(self, box) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Move the copies to")
        if folder:
            self.move_others(box, folder)

    def move_others(self, box: QGroupBox, folder: str | None) -> None:
        """Move every picture of the group but the one kept (selected) to `folder` (None: the Trash)."""
        cards = box.property("cards")
        others = [path for path, kept in _members(cards) if not kept and path not in self.gone]
        if folder is not None:
            try:
                check_writable_folder(Path(folder), "the folder to move copies to")
            except MMStudioError as exc:
                self.error.emit(str(exc))
                return
        moved, problems = [], []
        for path in others:
            try:
                if folder is None:
                    target = _trash(path)
                    info = str(Path(target).parent.parent / "info" / (Path(target).name + ".trashinfo"))
                else:
                    target = str(_free_name(Path(folder) / Path(path).name))
                    shutil.move(path, target)  # a rename, or a copy and delete across disks
                    info = ""
                moved.append((path, target, info))
            except OSError as exc:
                problems.append(str(exc))
        if moved:
            self.moved.emit([p for p, _, _ in moved])
            self.moves.append(moved)
            self.gone.update(p for p, _, _ in moved)
            self._grey(box)
            where = "the Trash" if folder is None else folder
            self.message.emit(f"Moved {len(moved)} picture{'s' * (len(moved) != 1)} to {where}. Undo puts them back.")
        if problems:
            self.error.emit("Could not move: " + "; ".join(problems[:3]))
        self.undo_button.setEnabled(bool(self.moves))

    def undo(self) -> None:
        if not self.moves:
            return
        action = self.moves.pop()
        problems, back = [], []
        for original, target, info in reversed(action):
            try:
                if os.path.exists(original):
                    raise OSError(f"{original}: a file of that name is back already")
                shutil.move(target, original)
                if info:
                    Path(info).unlink(missing_ok=True)
                self.gone.discard(original)
                back.append(original)
            except OSError as exc:
                problems.append(str(exc))
        for box in self.groups_box.findChildren(QGroupBox):
            self._grey(box)
        self.undo_button.setEnabled(bool(self.moves))
        if back:
            self.restored.emit(back[::-1])
        if problems:
            self.error.emit("Could not put back: " + "; ".join(problems[:3]))
        else:
            self.message.emit(f"Put {len(action)} picture{'s' * (len(action) != 1)} back.")

    def _grey(self, box: QGroupBox) -> None:
        cards = box.property("cards")
        for row in range(cards.count()):
            item = cards.item(row)
            enabled = item.data(_PATH) not in self.gone
            flags = item.flags()
            item.setFlags(flags | Qt.ItemFlag.ItemIsEnabled if enabled else flags & ~Qt.ItemFlag.ItemIsEnabled)
        _label(cards)


class _Cards(QListWidget):
    """A group's pictures as a grid that wraps to the panel's width and is as tall as its rows (no scrolling
    inside a group); the selected picture is the one to keep."""

    def __init__(self):
        super().__init__()
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(CARD)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        per_row = max(1, self.viewport().width() // CARD.width())
        rows = -(-self.count() // per_row)
        self.setFixedHeight(rows * CARD.height() + 2 * self.frameWidth() + 4)


def _members(cards: QListWidget) -> list[tuple[str, bool]]:
    return [(cards.item(row).data(_PATH), cards.item(row).isSelected()) for row in range(cards.count())]


def _label(cards: QListWidget) -> None:
    """Each card's text: the kept one says so, a moved one too."""
    for row in range(cards.count()):
        item = cards.item(row)
        base = item.data(_TEXT)
        if not item.flags() & Qt.ItemFlag.ItemIsEnabled:
            item.setText(f"{base}\n(moved)")
        else:
            item.setText(f"{base}\n✓ keep" if item.isSelected() else base)


def _free_name(path: Path) -> Path:
    """`path`, or `name (2).ext`... where a file of that name is there already: a move never overwrites."""
    candidate, n = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
        n += 1
    return candidate

"""Match panel: texts scored against the image (ITM probability, ITC similarity), sorted; Grad-CAM per text."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mmstudio.gui.qt_unknown_words import MarkedTextDelegate, mark_item
from mmstudio.gui.worker import OpenTickets
from mmstudio.models.base import KnownWords, MatchResult
from mmstudio.requests import ImageRef, MatchOutcome, MatchRequest

DEFAULT_TEXTS = ("a small red circle", "a large blue square", "a small green triangle and a large yellow star")


def _bar(value: float, low: float, high: float, text: str) -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setValue(int(round(1000 * (value - low) / (high - low))))
    bar.setFormat(text)
    bar.setTextVisible(True)
    return bar


_BAR_STYLE = ("QProgressBar { border: 1px solid #b8c4ce; border-radius: 2px; background: #ffffff; color: #1b1b1b;"
              " text-align: center; } QProgressBar::chunk { background: #9cc9ef; }")


class MatchPanel(QWidget):
    overlay_requested = Signal(object, int, str)
    message = Signal(str)
    error = Signal(str)
    scored = Signal(object)  # a MatchOutcome, after the panel has taken it in

    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client  # submit(request) -> Ticket
        self.texts: list[str] = list(DEFAULT_TEXTS)
        self.results: dict[str, list[MatchResult]] = {}  # per image key, for the current texts
        self._current: ImageRef | None = None
        self.pending = OpenTickets()
        self.known: KnownWords | None = None  # what the model knows, as of the latest texts with unknown words

        self.table = QTableWidget(0, 3)
        self.table.setItemDelegateForColumn(0, MarkedTextDelegate(self.table))
        # One text colour over the filled and the empty part of each score's bar (the style's default
        # switched colour at the chunk's edge); set once here, it reaches every bar in the table.
        self.table.setStyleSheet(_BAR_STYLE)
        self.table.setHorizontalHeaderLabels(["Text", "ITM match", "ITC similarity"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(1, 96)
        self.table.setColumnWidth(2, 96)
        self.table.setWordWrap(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked)
        self.table.setToolTip("Double-click a text to edit it; select a row to see its Grad-CAM map")
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_edited)
        add = QPushButton("Add…")
        add.setToolTip("Add a text to score")
        paste = QPushButton("Paste lines")
        paste.setToolTip("Add every line of the clipboard as a text")
        remove = QPushButton("Remove")
        remove.setToolTip("Remove the selected text (Delete)")
        self.score_button = QPushButton("Score")
        self.score_button.setToolTip("Score every text against the selected image")
        add.clicked.connect(self.add_dialog)
        paste.clicked.connect(self.paste_lines)
        remove.clicked.connect(self.remove_selected)
        self.score_button.clicked.connect(self.score)
        row = QHBoxLayout()
        for button in (add, paste, remove, self.score_button):
            row.addWidget(button)
        self.status = QLabel("")
        self.status.setWordWrap(True)  # a note on unknown words says what the model knows: a few lines
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Match — how well each text fits the image"))
        layout.addWidget(self.table, 1)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._show()

    # ------------------------------------------------------------------ texts

    def set_texts(self, texts) -> None:
        self.texts = [" ".join(t.split()) for t in texts if t.strip()]
        self.results.clear()
        self._show()
        self.score()

    def add_text(self, text: str) -> None:
        self.set_texts([*self.texts, text])

    def add_dialog(self) -> None:
        text, ok = QInputDialog.getText(self, "Add text", "Text to score against the image:")
        if ok and text.strip():
            self.add_text(text)

    def paste_lines(self) -> None:
        lines = [line for line in QGuiApplication.clipboard().text().splitlines() if line.strip()]
        if not lines:
            self.message.emit("The clipboard has no text lines to add.")
            return
        self.set_texts([*self.texts, *lines])

    def remove_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            text = self.table.item(rows[0].row(), 0).text()
            self.set_texts([t for t in self.texts if t != text])

    def _on_edited(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        old = item.data(Qt.ItemDataRole.UserRole)
        new = " ".join(item.text().split())
        if old is not None and new and new != old:
            self.set_texts([new if t == old else t for t in self.texts])

    # --------------------------------------------------------------- scoring

    def set_image(self, ref: ImageRef | None) -> None:
        self._current = ref
        self._show()
        if ref is not None and ref.key not in self.results:
            self.score()

    def score(self) -> None:
        if self._current is None or not self.texts:
            return
        request = MatchRequest(image=self._current, texts=tuple(self.texts), attention=True)
        self.status.setText("Scoring…")
        self.pending.submit(self.client, request, on_finished=self.on_finished, on_ended=self.on_ended,
                            on_error=self.error.emit)

    def on_finished(self, outcome: MatchOutcome) -> None:
        key = outcome.request.image.key
        if list(outcome.request.texts) != self.texts:
            return  # the texts changed meanwhile: a newer request is on its way
        self.results[key] = list(outcome.results)
        self.known = outcome.known or self.known
        if self._current is not None and self._current.key == key:
            self._show()
        self.scored.emit(outcome)

    def on_ended(self, request, reason: str) -> None:
        self.status.setText(reason)

    def _show(self) -> None:
        self.table.blockSignals(True)
        results = self.results.get(self._current.key, []) if self._current else []
        # Ties on ITM (often 0.0 % or 100 %) are ordered by ITC, so the order always means something.
        ordered = sorted(results, key=lambda r: (r.itm, r.itc), reverse=True) if results else \
            [MatchResult(t, float("nan"), float("nan")) for t in self.texts]
        self.table.setRowCount(len(ordered))
        for row, result in enumerate(ordered):
            item = QTableWidgetItem(result.text)
            item.setData(Qt.ItemDataRole.UserRole, result.text)
            mark_item(item, result.text, result.unknown_words)
            self.table.setItem(row, 0, item)
            if result.itm == result.itm:  # not NaN
                self.table.setCellWidget(row, 1, _bar(result.itm, 0.0, 1.0, f"{result.itm:.1%}"))
                self.table.setCellWidget(row, 2, _bar(result.itc, -1.0, 1.0, f"{result.itc:+.3f}"))
            else:
                self.table.removeCellWidget(row, 1)
                self.table.removeCellWidget(row, 2)
        self.table.blockSignals(False)
        if results:
            self.status.setText(self._unknown_note(results))

    def _unknown_note(self, results) -> str:
        if not any(result.unknown_words for result in results):
            return ""
        note = "Words in red are not in the model's vocabulary: it scored those texts as if they were not there."
        return f"{note} It knows {self.known.text()}." if self.known is not None else note

    def result_for(self, text: str) -> MatchResult | None:
        results = self.results.get(self._current.key, []) if self._current else []
        return next((r for r in results if r.text == text), None)

    def select_text(self, text: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == text:
                self.table.selectRow(row)
                return

    def show_evidence(self) -> None:
        """Put the selected text's Grad-CAM on the image, if a text is selected."""
        self._on_selection()

    def _on_selection(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        result = self.result_for(self.table.item(rows[0].row(), 0).text())
        if result is not None and result.attention is not None:
            self.overlay_requested.emit(result.attention, 0, f"Grad-CAM of “{result.text}”")

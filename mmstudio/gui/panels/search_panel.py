"""Search panel: find the gallery's images that fit a text (the matching model's embeddings, indexed once)."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from mmstudio.gui.qt_unknown_words import marked_html
from mmstudio.gui.qt_world_banner import MODEL_MENU
from mmstudio.gui.worker import OpenTickets
from mmstudio.models.in_domain import out_of_world
from mmstudio.models.words import not_understood
from mmstudio.requests import ImageRef, SearchOutcome, SearchRequest

_KEY_ROLE = Qt.ItemDataRole.UserRole
PAGE = 60  # results added to the grid at a time, as it is scrolled to the end


class SearchPanel(QWidget):
    message = Signal(str)
    error = Signal(str)
    image_chosen = Signal(str)  # the gallery key of a result the user picked

    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client  # submit(request) -> Ticket
        self.hits = ()  # SearchHit of the latest search, best first
        self.pending = OpenTickets()
        self._latest: int | None = None
        self._gallery_refs = lambda: []
        self._current_ref = lambda: None
        self.setAcceptDrops(True)  # a picture dropped here: find the gallery's pictures like it

        self.query = QLineEdit()
        self.query.setPlaceholderText("Describe the image you are looking for")
        self._query_tip = "A text; the gallery's images are ranked by how well they fit it (Enter searches)"
        self.query.setToolTip(self._query_tip)
        self.query.returnPressed.connect(self.search)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 100_000)
        self.top_k.setValue(200)
        self.top_k.setPrefix("top ")
        self.top_k.setToolTip(f"How many images to find; they are shown {PAGE} at a time as you scroll down")
        self.search_button = QPushButton("Search")
        self.search_button.setToolTip("Index the gallery's new images, then rank them all by the text")
        self.search_button.clicked.connect(self.search)
        self.like_button = QPushButton("Like this one")
        self.like_button.setToolTip("Find the gallery's pictures that look most like the one shown "
                                    "(or drop a picture on this tab)")
        self.like_button.clicked.connect(lambda: self.search_like(self._current_ref()))
        self.results = QListWidget()
        self.results.setToolTip("Click a result to show it")
        # A grid of thumbnails, best first: a text list of file names could not tell two same-named files apart.
        self.results.setViewMode(QListWidget.ViewMode.IconMode)
        self.results.setIconSize(QSize(96, 96))
        self.results.setGridSize(QSize(124, 150))
        self.results.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.results.setMovement(QListWidget.Movement.Static)
        self.results.setWordWrap(True)
        self._icon_of = lambda key: QIcon()
        self.results.currentItemChanged.connect(self._on_current)
        self.results.verticalScrollBar().valueChanged.connect(self._scrolled)
        # A page that does not fill the grid leaves nothing to scroll: the next one comes once laid out.
        self.results.verticalScrollBar().rangeChanged.connect(lambda _low, _high: self._scrolled())
        self._shown = 0  # hits of the latest search shown so far
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.query, 1)
        row.addWidget(self.top_k)
        row.addWidget(self.search_button)
        row.addWidget(self.like_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Search — the gallery's images that fit a text, or look like a picture"))
        layout.addLayout(row)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    def set_gallery_source(self, refs_callable, icon_of=None, current=None) -> None:
        """Where the images to search come from, (optionally) their thumbnails by gallery key, and the one shown."""
        self._gallery_refs = refs_callable
        if icon_of is not None:
            self._icon_of = icon_of
        if current is not None:
            self._current_ref = current

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.search_like(ImageRef(key=files[0], path=Path(files[0])))

    # ------------------------------------------------------------- requests

    def search(self) -> None:
        text = " ".join(self.query.text().split())
        if not text:
            self.message.emit("Type what you are looking for first.")
            return
        refs = self._gallery()
        if refs:
            self._submit(SearchRequest(images=refs, query=text, top_k=self.top_k.value()))

    def _gallery(self) -> tuple[ImageRef, ...]:
        """The gallery's images to search, or () after saying there are none."""
        refs = tuple(self._gallery_refs())
        if not refs:
            self.message.emit("Open some images first: search runs over the gallery.")
        return refs

    def _submit(self, request: SearchRequest) -> None:
        refs = request.images
        self._latest = request.id
        self.progress.setRange(0, len(refs))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self._say(f"Searching {len(refs)} images…")
        ticket = self.pending.submit(self.client, request, on_finished=self.on_finished, on_ended=self.on_ended,
                                     on_error=self.error.emit)
        ticket.progress.connect(lambda done, total: self._on_progress(ticket, done, total))

    def search_like(self, like: ImageRef | None) -> None:
        """Rank the gallery's pictures by how much they look like `like` (its embedding against theirs)."""
        if like is None:
            self.message.emit("Select a picture in the gallery first, or drop one on this tab.")
            return
        refs = self._gallery()
        if refs:
            self._submit(SearchRequest(images=refs, query="", top_k=self.top_k.value(), like=like))

    def _on_progress(self, ticket, done: int, total: int) -> None:
        if ticket.id == self._latest:
            self.progress.setValue(done)
            self._say(f"Indexed {done} of {total} images…")

    def on_finished(self, outcome: SearchOutcome) -> None:
        if outcome.request.id != self._latest:
            return  # a newer search is on its way
        self.progress.setVisible(False)
        self.hits = outcome.hits
        self.results.blockSignals(True)
        self.results.clear()
        self.results.blockSignals(False)
        self._shown = 0
        self._add_page()
        report = outcome.report
        fresh = f", {report.encoded} newly indexed" if report.encoded else ""
        like = outcome.request.like
        if like is not None:
            name = like.path.name if like.path is not None else "the pasted picture"
            text = html.escape(f"{len(outcome.hits)} of {report.images} images most like {name}{fresh}.")
        else:
            query = marked_html(outcome.request.query, outcome.unknown_words)
            text = f"{len(outcome.hits)} best of {report.images} images for “{query}”{html.escape(fresh)}."
        for note in report.notes:  # a damaged index rebuilt, or one that cannot be saved
            text += "<br>" + html.escape(note[:1].upper() + note[1:] + ".")
        outside = sum(out_of_world(hit.in_domain) for hit in outcome.hits)
        if outside:  # a built-in model's match on a photo or a screenshot is no evidence: say so once, here
            text += "<br>" + html.escape(
                ("1 of them is not a Shapes World scene" if outside == 1 else
                 f"{outside} of them are not Shapes World scenes") + " (marked “outside its world”): the built-in "
                "model knows only coloured shapes, so its match on them means little. "
                f"For photos load another model: {MODEL_MENU}.")
        if outcome.unknown_words:  # ranked by the query without them: say so, and what the model knows
            text += "<br>" + html.escape(not_understood(outcome.unknown_words, outcome.known).capitalize())
        self._say(text, rich=True)
        self.query.setToolTip(not_understood(outcome.unknown_words, None) if outcome.unknown_words else
                              self._query_tip)

    def _add_page(self) -> None:
        """The next PAGE hits as thumbnails: thousands of results cost only what is scrolled to."""
        page = self.hits[self._shown:self._shown + PAGE]
        self.results.blockSignals(True)
        for hit in page:
            path = hit.image.path
            name = f"{path.parent.name}/{path.name}" if path is not None else "pasted image"
            # A re-ranked hit shows the matching head's verdict, which a person can read; the cosine is a tooltip.
            score = f"{hit.match:.0%} match" if hit.match is not None else f"{hit.score:+.3f}"
            outside = out_of_world(hit.in_domain)
            if outside:
                score += ", outside its world"
            item = QListWidgetItem(self._icon_of(hit.image.key), f"{hit.rank}. {score}\n{name}")
            item.setData(_KEY_ROLE, hit.image.key)
            where = str(path) if path is not None else hit.image.key
            tip = where if hit.match is None else (f"{where}\nmatching head: {hit.match:.1%} that the text describes "
                                                   f"this image; embedding similarity {hit.score:+.3f}")
            if outside:
                tip += (f"\nNot a Shapes World scene (in_domain {hit.in_domain:.1e}): the built-in model's match "
                        "on it means little")
                item.setForeground(self.palette().placeholderText())
            item.setToolTip(tip)
            self.results.addItem(item)
        self.results.blockSignals(False)
        self._shown += len(page)
        if self._shown < len(self.hits):
            QTimer.singleShot(0, self._scrolled)

    def _scrolled(self, _value: int = 0) -> None:
        bar = self.results.verticalScrollBar()
        if self._shown < len(self.hits) and bar.value() >= bar.maximum() - bar.pageStep() // 2:
            self._add_page()

    def on_ended(self, request, reason: str) -> None:
        if request.id == self._latest:
            self.progress.setVisible(False)
            self._say(reason)

    def _say(self, text: str, rich: bool = False) -> None:
        # Only the marked query is rich text: a file name with "<" or "&" in it must read as typed.
        self.status.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.status.setText(text)

    def _on_current(self, item, _previous) -> None:
        if item is not None:
            self._say(item.toolTip())  # the full path of the chosen result
            self.image_chosen.emit(item.data(_KEY_ROLE))

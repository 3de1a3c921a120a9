"""Caption panel: the selected image's caption, word by word; caption all; export."""

from __future__ import annotations

import html
import time
from pathlib import Path

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from mmstudio.attention import first_content_token
from mmstudio.exports import write_captions
from mmstudio.gui.qt_generation import GenerationBox
from mmstudio.gui.worker import OpenTickets, Ticket
from mmstudio.models.base import CaptionResult
from mmstudio.requests import CaptionOutcome, CaptionRequest, ImageRef


class CaptionPanel(QWidget):
    overlay_requested = Signal(object, int, str)  # stack, token index, label
    message = Signal(str)
    error = Signal(str)
    captioned = Signal(object)  # a CaptionOutcome, after the panel has taken it in
    teach_requested = Signal(object, dict)  # ImageRef, {"caption": ...}

    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client  # submit(request) -> Ticket
        self.results: dict[str, CaptionResult] = {}
        self.partial: dict[str, str] = {}  # a chat model's caption while it is written, by image key
        self.errors: dict[str, str] = {}
        self._paths: dict[str, str] = {}
        self._current: ImageRef | None = None
        self.pending = OpenTickets()
        self._batch: Ticket | None = None
        self._loading = ("", 0.0)  # the loading message shown, and since when
        self._loading_clock = QTimer(self)
        self._loading_clock.setInterval(1000)
        self._loading_clock.timeout.connect(self._tick_loading)
        self._selected_token = -1

        self.words = QTextBrowser()
        self.words.setOpenLinks(False)
        self.words.setToolTip("Click a word to see which image patches it looked at")
        self.words.anchorClicked.connect(self._on_word)
        self.caption_button = QPushButton("Caption")
        self.caption_button.setToolTip("Caption the selected image again")
        self.all_button = QPushButton("Caption all")
        self.all_button.setToolTip("Caption every image in the gallery (Ctrl+Shift+A)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop captioning the gallery (Esc)")
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save all captions as JSON or CSV")
        self.teach_button = QPushButton("Correct && teach…")
        self.teach_button.setToolTip("Fix this caption and add the image with it to a training dataset")
        self.teach_button.clicked.connect(self.correct_dialog)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.generation = GenerationBox("caption", prompt=True)
        # A changed setting captions the selected image again, once the user has stopped turning the knob.
        self._regenerate = QTimer(self)
        self._regenerate.setSingleShot(True)
        self._regenerate.setInterval(400)
        self._regenerate.timeout.connect(lambda: self._current is not None and self.request_current(force=True))
        self.generation.changed.connect(self._regenerate.start)

        buttons = QGridLayout()
        for i, button in enumerate((self.caption_button, self.all_button, self.cancel_button, self.teach_button,
                                    self.export_button)):
            buttons.addWidget(button, i // 3, i % 3)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Caption — click a word to see where it looked"))
        layout.addWidget(self.words, 1)
        layout.addWidget(self.generation)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.caption_button.clicked.connect(lambda: self.request_current(force=True))
        self.export_button.clicked.connect(self.export_dialog)
        self.cancel_button.clicked.connect(self.cancel_batch)
        self._gallery_refs = lambda: []
        self.all_button.clicked.connect(lambda: self.caption_all(self._gallery_refs()))
        self._show()

    # ------------------------------------------------------------- requests

    def set_gallery_source(self, refs_callable) -> None:
        self._gallery_refs = refs_callable

    def set_image(self, ref: ImageRef | None) -> None:
        self._current = ref
        self._selected_token = -1
        self._show()
        if ref is not None and ref.key not in self.results and ref.key not in self.errors:
            self.request_current()

    def request_current(self, force: bool = False) -> None:
        ref = self._current
        if ref is None:
            if force:  # the Caption button with nothing selected: say why nothing happens
                self.message.emit("Open or select an image first: Caption runs on the selected image.")
            return
        if force:
            self.results.pop(ref.key, None)
        if any(ref in req.images for req in self.pending.requests()):
            return  # already on its way
        self.status.setText("Captioning…")
        ticket = self._submit(CaptionRequest(images=(ref,), attention=True, generation=self.generation.options()))
        ticket.started.connect(self._on_started)
        ticket.text.connect(lambda _index, text, key=ref.key: self._on_text(key, text))

    def _on_text(self, key: str, text: str) -> None:
        """A chat model's caption so far: shown as it is written."""
        self.partial[key] = text
        if self._current is not None and self._current.key == key and key not in self.results:
            self._show()

    def caption_all(self, refs: list[ImageRef]) -> None:
        todo = tuple(r for r in refs if r.key not in self.results)
        if not refs:
            self.message.emit("Open some images first: Caption all runs over the gallery.")
            return
        if not todo:
            self.message.emit("Every image already has a caption.")
            return
        self.progress.setRange(0, len(todo))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.all_button.setEnabled(False)
        self._batch = self._submit(CaptionRequest(images=todo, attention=True, generation=self.generation.options()))
        self._batch.progress.connect(self._on_batch_progress)

    def cancel_batch(self) -> None:
        if self._batch is not None:
            self._batch.cancel()

    @property
    def batch_running(self) -> bool:
        return self._batch is not None

    def _submit(self, request: CaptionRequest) -> Ticket:
        return self.pending.submit(self.client, request, on_finished=self.on_finished, on_ended=self.on_ended,
                                   on_error=self.error.emit)

    # -------------------------------------------------------------- results

    def _on_started(self, text: str) -> None:
        """A model's first use takes seconds: say it is loading, and for how long so far."""
        if self._batch is not None:
            return
        self.status.setText(text)
        if text.startswith("Loading "):
            self._loading = (text, time.monotonic())
            self._loading_clock.start()

    def _tick_loading(self) -> None:
        text, since = self._loading
        if not self.status.text().startswith(text):  # the caption came (or something else was said)
            self._loading_clock.stop()
            return
        self.status.setText(f"{text} {time.monotonic() - since:.0f} s")

    def _on_batch_progress(self, done: int, total: int) -> None:
        self.progress.setValue(done)
        self.status.setText(f"Captioned {done} of {total}")

    def on_finished(self, outcome: CaptionOutcome) -> None:
        current = self._current.key if self._current is not None else None
        # The selected image captioned again (other settings): the word chosen and its map were the old caption's.
        replaced = self._selected_token >= 0 and any(item.image.key == current for item in outcome.items)
        for item in outcome.items:
            if item.result is not None:
                self.results[item.image.key] = item.result
            else:
                self.errors[item.image.key] = item.error or "failed"
            if item.image.path is not None:  # exports name every image by its absolute path
                self._paths[item.image.key] = str(Path(item.image.path).absolute())
        if self._batch is not None and outcome.request.id == self._batch.id:
            self._end_batch(f"Captioned {len(outcome.items)} images.")
        # Results of other images are kept; only the selected image is shown (stale ones are not).
        self._show()
        if replaced:
            self._selected_token = -1
            self.show_evidence()
        for item in outcome.items:
            if item.error:
                self.error.emit(item.error)
        self.captioned.emit(outcome)

    def on_ended(self, request, reason: str) -> None:
        """The request failed or was cancelled."""
        if self._batch is not None and request.id == self._batch.id:
            self._end_batch(reason)
        elif self._current is not None and self._current in request.images:
            self.status.setText(reason)
            QTimer.singleShot(0, self._show)  # once the ticket is let go: a stopped caption says so

    def _end_batch(self, text: str) -> None:
        if text == "Cancelled.":  # say how far it got: those captions are kept
            text = f"Cancelled after {self.progress.value()} of {self.progress.maximum()} images."
        self._batch = None
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.all_button.setEnabled(True)
        self.status.setText(text)

    # ------------------------------------------------------------------ view

    def _show(self) -> None:
        ref = self._current
        if ref is None:
            self.words.setHtml("<p style='color:gray'>Open or drop an image to caption it.</p>")
            return
        if ref.key in self.errors:
            self.words.setHtml(f"<p style='color:#b00'>{html.escape(self.errors[ref.key])}</p>")
            return
        result = self.results.get(ref.key)
        if result is None and self.partial.get(ref.key):  # being written, or stopped: what it wrote stays
            writing = any(ref in request.images for request in self.pending.requests())
            mark = "▌" if writing else "<i>(stopped)</i>"
            self.words.setHtml(f"<p>{html.escape(self.partial[ref.key])} <span style='color:gray'>{mark}</span></p>")
            return
        if result is None:
            self.words.setHtml("<p style='color:gray'>Captioning…</p>")
            return
        parts = []
        if result.prompt:  # given, not generated: no map to click
            parts.append(f"<span style='color:#888' title='Your prompt: the model went on from it'>"
                         f"{html.escape(result.prompt)}</span>")
        for i, token in enumerate(result.tokens):
            style = "background:#ffd54f;" if i == self._selected_token else ""
            parts.append(f"<a href='token:{i}' style='text-decoration:none;{style}'>{html.escape(token)}</a>")
        self.words.setHtml(f"<p style='font-size:15pt; line-height:150%'>{' '.join(parts)}</p>")
        if self.status.text().startswith(("Captioning…", "Loading ")):  # done; a batch's summary stays
            self.status.setText("")

    def current_result(self) -> CaptionResult | None:
        return self.results.get(self._current.key) if self._current else None

    def show_evidence(self) -> None:
        """Put the selected image's caption evidence on the image: the chosen word's, or its first word's."""
        result = self.current_result()
        if result is not None and result.tokens:
            chosen = self._selected_token
            self.select_token(chosen if 0 <= chosen < len(result.tokens) else first_content_token(result.tokens))

    def select_token(self, index: int) -> None:
        result = self.current_result()
        if result is None or result.attention is None or not 0 <= index < len(result.tokens):
            return
        self._selected_token = index
        self._show()
        self.overlay_requested.emit(result.attention, index, f"word “{result.tokens[index]}”")

    def _on_word(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("token:"):
            self.select_token(int(text.split(":", 1)[1]))

    def correct_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        result = self.current_result()
        if self._current is None:
            self.message.emit("Select an image first: a correction is saved with its image.")
            return
        text, ok = QInputDialog.getText(self, "Correct the caption", "The right caption for this image:",
                                        text=result.caption if result else "")
        if ok and text.strip():
            self.teach_requested.emit(self._current, {"caption": " ".join(text.split())})

    # ---------------------------------------------------------------- export

    def export_dialog(self) -> None:
        if not self.results:
            self.message.emit("No captions to export yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export captions", "captions.json",
                                              "JSON (*.json);;CSV (*.csv)")
        if path:
            self.export(Path(path))

    def export(self, path: Path) -> Ticket:
        """Write every caption to `path` (JSON, or CSV by the suffix) on a background thread."""
        rows = [{"image": self._paths.get(key, key), "caption": r.caption, "tokens": list(r.tokens)}
                for key, r in self.results.items()]
        ticket = self.client.run(f"Exporting {len(rows)} captions…", write_captions, Path(path), rows)
        ticket.finished.connect(lambda written: self.message.emit(f"Exported {len(rows)} captions to {written}"))
        ticket.failed.connect(lambda exc: self.error.emit(f"Export failed: {exc}"))
        return ticket

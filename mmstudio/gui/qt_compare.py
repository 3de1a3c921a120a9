"""Before and after: the base model and a fine-tuned one on the same image, side by side."""

from __future__ import annotations

import html

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QDialog, QGridLayout, QLabel

from mmstudio.attention import first_content_token
from mmstudio.gui.qt_image_view import pil_to_qimage
from mmstudio.gui.qt_unknown_words import CAUTION_COLOR, COLOR, marked_html
from mmstudio.gui.worker import OpenTickets
from mmstudio.models.base import Task
from mmstudio.overlay import blend
from mmstudio.requests import AskRequest, CaptionRequest, ImageRef, MatchRequest

SIDE = 320


class CompareDialog(QDialog):
    def __init__(self, client, task: Task, models: tuple[str, str], ref: ImageRef, image: Image.Image, *,
                 question: str = "how many objects are there?", texts: tuple[str, ...] = (), parent=None):
        super().__init__(parent)
        self.setWindowTitle("Before and after fine-tuning")
        self.client, self.image = client, image
        self.slots: dict[int, tuple[QLabel, QLabel]] = {}
        self.requests = []
        self.tickets = OpenTickets()
        self.question, self.task = question, task
        grid = QGridLayout(self)
        for column, (title, name) in enumerate(zip(("Before (base)", "After (fine-tuned)"), models)):
            grid.addWidget(QLabel(f"<b>{title}</b><br><small>{html.escape(name)}</small>"), 0, column)
            picture, text = QLabel(), QLabel("working…")
            picture.setFixedSize(SIDE, SIDE)
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            text.setWordWrap(True)
            text.setMaximumWidth(SIDE)
            grid.addWidget(picture, 1, column)
            grid.addWidget(text, 2, column)
            if task == Task.CAPTION:
                request = CaptionRequest(images=(ref,), model=name)
            elif task == Task.VQA:
                request = AskRequest(image=ref, question=question, model=name)
            else:
                request = MatchRequest(image=ref, texts=texts, model=name)
            self.slots[request.id] = (picture, text)
            self.requests.append(request)
            self._show(picture, None)

    def start(self) -> None:
        # Each ticket is this dialog's own: its results and failures show here, nowhere else.
        for request in self.requests:
            self.tickets.submit(self.client, request, on_finished=self._on_finished, on_ended=self._on_ended)

    def done(self, result: int) -> None:
        self.tickets.cancel_all()  # closing the dialog drops what it still waited for
        super().done(result)

    def _show(self, picture: QLabel, amap) -> None:
        image = self.image if amap is None else blend(self.image, amap, opacity=0.6)
        pixmap = QPixmap.fromImage(pil_to_qimage(image)).scaled(SIDE, SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                                                Qt.TransformationMode.SmoothTransformation)
        picture.setPixmap(pixmap)

    def _on_finished(self, outcome) -> None:
        slot = self.slots.get(outcome.request.id)
        if slot is None:
            return
        picture, text = slot
        if self.task == Task.CAPTION:
            item = outcome.items[0]
            result = item.result
            if result is None:
                text.setText(html.escape(item.error or "failed"))
                return
            focus = first_content_token(result.tokens)
            if result.attention is not None and result.tokens:
                self._show(picture, result.attention.maps()[focus])
            text.setText(f"<span style='font-size:13pt'>{html.escape(result.caption)}</span>")
        elif self.task == Task.VQA:
            result = outcome.result
            if result.answer_attention is not None:
                self._show(picture, result.answer_attention.maps()[0])
            if not result.understood:  # one model may know a word the other does not (a fine-tuned one)
                text.setText(f"{marked_html(self.question, result.unknown_words)}<br><span style='color:{COLOR}'>"
                             f"did not understand {html.escape(', '.join(result.unknown_words))}</span>")
                return
            caution = f"<br><span style='color:{CAUTION_COLOR}'>not a form it learned: maybe a guess</span>" \
                if result.familiar is False else ""
            text.setText(f"{html.escape(self.question)}<br><b style='font-size:13pt'>"
                         f"{html.escape(result.answer)}</b>{caution}")
        else:
            best = max(outcome.results, key=lambda r: r.itm)
            if best.attention is not None:
                self._show(picture, best.attention.maps()[0])
            text.setText("<br>".join(f"{r.itm:6.1%} {html.escape(r.text)}"
                                     for r in sorted(outcome.results, key=lambda r: -r.itm)))

    def _on_ended(self, request, reason: str) -> None:
        slot = self.slots.get(request.id)
        if slot is not None:
            slot[1].setText(f"<span style='color:#b00'>{html.escape(reason)}</span>")

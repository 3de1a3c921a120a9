"""Ask panel: a chat per image; each answer can show where the model looked."""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from mmstudio.gui.qt_generation import GenerationBox
from mmstudio.gui.qt_unknown_words import CAUTION_COLOR, COLOR, marked_html, wave_underlines
from mmstudio.gui.worker import OpenTickets
from mmstudio.models.base import AnswerResult, KnownWords
from mmstudio.models.words import unfamiliar
from mmstudio.requests import AskOutcome, AskRequest, ImageRef


@dataclass
class Turn:
    question: str
    result: AnswerResult | None = None
    error: str | None = None
    request_id: int | None = None
    known: KnownWords | None = None  # what the model knows, when it did not understand the question or its form
    partial: str = ""  # the answer so far, from a model that writes it token by token (a chat model)


class ChatInput(QPlainTextEdit):
    """Enter adds a line; Ctrl+Enter sends (a key handler, so it works wherever the focus came from)."""

    submitted = Signal()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class AskPanel(QWidget):
    overlay_requested = Signal(object, int, str)
    message = Signal(str)
    error = Signal(str)
    teach_requested = Signal(object, dict)  # ImageRef, {"question": ..., "answer": ...}
    answered = Signal(object)  # an AskOutcome, after the panel has taken it in

    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client  # submit(request) -> Ticket
        self.history: dict[str, list[Turn]] = {}  # per image, kept while the app runs
        self._current: ImageRef | None = None
        self.pending = OpenTickets()
        self._turns: dict[int, tuple[str, Turn]] = {}  # request id -> (image key, its turn)

        self.chat = QTextBrowser()
        self.chat.setOpenLinks(False)
        self.chat.anchorClicked.connect(self._on_link)
        # The newest turn stays in view when the text grows or the window is resized (a narrower window wraps
        # longer, so the bottom moves), unless the person has scrolled up to read an earlier turn.
        self._follow = True
        bar = self.chat.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range)
        self.input = ChatInput()
        self.input.setPlaceholderText("e.g. what color is the circle? (Ctrl+Enter sends)")
        self.input.setMaximumHeight(70)
        self.send_button = QPushButton("Ask")
        self.send_button.setToolTip("Send the question (Ctrl+Enter)")
        self.send_button.clicked.connect(self.send)
        self.input.submitted.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End the answers being written now, keeping what they say so far")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.generation = GenerationBox("vqa", prompt=False)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        row.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Ask — a conversation per image"))
        layout.addWidget(self.chat, 1)
        layout.addWidget(self.generation)
        layout.addLayout(row)
        self._show()

    def set_image(self, ref: ImageRef | None) -> None:
        self._current = ref
        self.send_button.setEnabled(ref is not None)
        self._show()

    def send(self) -> None:
        question = " ".join(self.input.toPlainText().split())
        if not question or self._current is None:
            return
        self.ask(question)
        self.input.clear()

    def ask(self, question: str) -> int:
        ref = self._current
        # The conversation so far, for a chat model (others answer each question alone): the answered turns.
        history = tuple((t.question, t.result.answer) for t in self.history.get(ref.key, [])
                        if t.result is not None and t.result.understood and not t.error)
        request = AskRequest(image=ref, question=question, attention=True, generation=self.generation.options(),
                             history=history)
        turn = Turn(question, request_id=request.id)
        self.history.setdefault(ref.key, []).append(turn)
        self._turns[request.id] = (ref.key, turn)
        self._show()
        ticket = self.pending.submit(self.client, request, on_finished=self.on_finished, on_ended=self.on_ended,
                                     on_error=self.error.emit)
        ticket.text.connect(lambda _index, text, t=turn: self._on_text(t, text))
        ticket.ended.connect(lambda: self.stop_button.setEnabled(len(self.pending) > 0))
        self.stop_button.setEnabled(True)
        return request.id

    def stop(self) -> None:
        """End every answer being written; each keeps what it wrote (a chat model's) and says it was stopped."""
        self.pending.cancel_all()

    def _on_text(self, turn: Turn, text: str) -> None:
        turn.partial = text
        if self._current is not None and turn in self.history.get(self._current.key, []):
            self._show()

    def on_finished(self, outcome: AskOutcome) -> None:
        key, turn = self._turns.pop(outcome.request.id)
        turn.result, turn.known = outcome.result, outcome.known
        if self._current is not None and self._current.key == key:
            self._show()
            self.show_answer(len(self.history[key]) - 1 if turn is self.history[key][-1]
                             else self.history[key].index(turn))
        self.answered.emit(outcome)

    def on_ended(self, request, reason: str) -> None:
        key, turn = self._turns.pop(request.id, (None, None))
        if turn is not None:
            turn.error = reason
            self._show()

    def show_evidence(self) -> None:
        """Put the latest answer's evidence for the selected image on the image, if there is one."""
        turns = self.history.get(self._current.key, []) if self._current else []
        # A question the model did not understand has no evidence: the latest answer that has some.
        answered = [i for i, turn in enumerate(turns) if turn.result is not None and turn.result.understood]
        if answered:
            self.show_answer(answered[-1])

    def show_answer(self, index: int) -> None:
        turns = self.history.get(self._current.key, []) if self._current else []
        if 0 <= index < len(turns) and turns[index].result and turns[index].result.answer_attention is not None:
            result = turns[index].result
            self.overlay_requested.emit(result.answer_attention, 0, f"answer “{result.answer}”")

    def correct_dialog(self, index: int) -> None:
        from PySide6.QtWidgets import QInputDialog

        turn = self.history[self._current.key][index]
        answer, ok = QInputDialog.getText(self, "Correct the answer", turn.question,
                                          text=turn.result.answer if turn.result else "")
        if ok and answer.strip():
            self.teach_requested.emit(self._current, {"question": turn.question, "answer": answer.strip()})

    def _on_link(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("answer:"):
            self.show_answer(int(text.split(":", 1)[1]))
        elif text.startswith("correct:"):
            self.correct_dialog(int(text.split(":", 1)[1]))
        elif text.startswith("w:"):  # a word of a chat model's answer: that word's own map
            turn_index, token = (int(v) for v in text.split(":")[1:])
            result = self.history[self._current.key][turn_index].result
            self.overlay_requested.emit(result.answer_token_attention, token,
                                        f"answer word “{result.answer_tokens[token]}”")
        elif text.startswith("q:"):
            turn_index, token = (int(v) for v in text.split(":")[1:])
            result = self.history[self._current.key][turn_index].result
            self.overlay_requested.emit(result.question_attention, token,
                                        f"question word “{result.question_tokens[token]}”")

    def _show(self) -> None:
        if self._current is None:
            self.chat.setHtml("<p style='color:gray'>Select an image to ask about it.</p>")
            return
        turns = self.history.get(self._current.key, [])
        if not turns:
            self.chat.setHtml("<p style='color:gray'>No questions yet. Try “how many objects are there?”</p>")
            return
        blocks = []
        for i, turn in enumerate(turns):
            if turn.result is not None and not turn.result.understood:
                words = marked_html(turn.question, turn.result.unknown_words)
            elif turn.result is not None and turn.result.question_attention is not None:
                words = "".join(("" if t in "?,.!" or j == 0 else " ") +
                                f"<a href='q:{i}:{j}' style='color:#1a3d6b;text-decoration:none'>"
                                f"{html.escape(t)}</a>" for j, t in enumerate(turn.result.question_tokens))
            else:
                words = html.escape(turn.question)
            blocks.append(f"<p><b>You:</b> {words}</p>")
            if turn.error and turn.partial:  # stopped while writing: what it wrote stays
                blocks.append(f"<p><b>Model:</b> <span style='font-size:14pt'>{html.escape(turn.partial)}</span>"
                              " <span style='color:gray'><i>(stopped)</i></span></p>")
            elif turn.error:
                blocks.append(f"<p style='color:#b00'><b>Error:</b> {html.escape(turn.error)}</p>")
            elif turn.result is None and turn.partial:
                blocks.append(f"<p><b>Model:</b> <span style='font-size:14pt'>{html.escape(turn.partial)}</span>"
                              " <span style='color:gray'>▌</span></p>")
            elif turn.result is None:
                blocks.append("<p style='color:gray'><i>thinking…</i></p>")
            elif not turn.result.understood:
                blocks.append(_not_understood(i, turn))
            else:
                answer = html.escape(turn.result.answer)
                if turn.result.answer_token_attention is not None:  # each word: where it looked for that word
                    answer = " ".join(f"<a href='w:{i}:{j}' style='color:#111;text-decoration:none'>"
                                      f"{html.escape(t)}</a>" for j, t in enumerate(turn.result.answer_tokens))
                blocks.append(f"<p><b>Model:</b> <span style='font-size:14pt'>{answer}"
                              f"</span> &nbsp; <a href='answer:{i}'>where it looked</a>"
                              f" &nbsp; <a href='correct:{i}'>correct &amp; teach</a></p>")
                if turn.result.familiar is False:
                    caution = html.escape(unfamiliar(turn.known))
                    blocks.append(f"<p style='color:{CAUTION_COLOR}'>{caution[:1].upper() + caution[1:]}.</p>")
        self._follow = True  # a new or growing turn: show it
        self.chat.setHtml("".join(blocks))
        wave_underlines(self.chat.document())
        self.chat.verticalScrollBar().setValue(self.chat.verticalScrollBar().maximum())

    def _on_scrolled(self, value: int) -> None:
        bar = self.chat.verticalScrollBar()
        if not bar.signalsBlocked() and bar.maximum() > 0:
            self._follow = value >= bar.maximum() - 2

    def _on_range(self, _low: int, high: int) -> None:
        if self._follow:
            self.chat.verticalScrollBar().setValue(high)


def _not_understood(index: int, turn: Turn) -> str:
    """The reply to a question with words the model does not know: which, instead of a guess, and what it knows."""
    words = ", ".join(f"“{html.escape(w)}”" for w in turn.result.unknown_words)
    reply = (f"<p><b>Model:</b> <span style='color:{COLOR}'>did not understand {words}</span>: not in its "
             f"vocabulary, so no answer &nbsp; <a href='correct:{index}'>teach it</a></p>")
    if turn.known is not None:
        reply += f"<p style='color:#555'>It knows {html.escape(turn.known.text())}.</p>"
    return reply

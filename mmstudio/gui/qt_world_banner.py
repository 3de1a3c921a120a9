"""The banner over a picture the built-in models were not made for (a photo, a screenshot, a page of text).

They caption such a picture as confidently as a scene ("a large purple star and a large purple star ...");
the banner says what they know and how to load a model that knows more. It floats over the bottom of the
image view, as the message bar floats over its top, so nothing moves when it comes and goes.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QWidget

from mmstudio.models.base import Task
from mmstudio.models.in_domain import out_of_world

MODEL_MENU = "Model ▸ Models and device… (Ctrl+M)"
TEXT = ("<b>Not a Shapes World scene: this {what} means little.</b> The built-in models know only circles, "
        "squares, triangles and stars (red, green, blue, yellow, purple, orange; small or large) on a light plain "
        f"background. For photos, screenshots or text load another model: <b>{MODEL_MENU}</b>, a model folder "
        "or a Hugging Face id such as Salesforce/blip-image-captioning-base.")
WHAT = {Task.CAPTION: "caption", Task.VQA: "answer", Task.ITM: "score"}


class WorldBanner(QWidget):
    """Shown by `show_for` when the active model's result flags the picture; `models_requested` opens the dialog."""

    models_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.setVerticalSpacing(2)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.button = QPushButton("Models and device…")
        self.button.setToolTip("Load a model that knows photos: a folder or a Hugging Face checkpoint")
        self.button.clicked.connect(self.models_requested)
        close = QPushButton("✕")
        close.setFlat(True)
        close.setFixedWidth(28)
        close.setToolTip("Hide for this picture")
        close.clicked.connect(self.dismiss)
        # The text takes the whole width (the image column is narrow in a 1000 px window); the button under it.
        layout.addWidget(self.label, 0, 0)
        layout.addWidget(close, 0, 1, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.button, 1, 0, 1, 2, Qt.AlignmentFlag.AlignRight)
        layout.setColumnStretch(0, 1)
        # Opaque and amber: it floats over the picture, and is a warning, not an error (red) or a notice (blue).
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("WorldBanner { background: #fff3cd; border-top: 1px solid #e0b94f; }"
                           " QLabel { color: #4d3800; }")
        self.in_domain: float | None = None
        self._dismissed: str | None = None  # the picture whose banner the user closed
        self._key: str | None = None
        self.hide()

    def show_for(self, key: str | None, task: Task, in_domain: float | None) -> bool:
        """Show the banner for picture `key` when `in_domain` flags it, else hide it; returns whether shown."""
        self._key, self.in_domain = key, in_domain
        flagged = key is not None and out_of_world(in_domain) and key != self._dismissed
        if flagged:
            self.label.setText(TEXT.format(what=WHAT[Task(task)]))
            self.label.setToolTip(f"in_domain {in_domain:.1e}: the share of Shapes World scenes that look "
                                  "at least this unusual to the model")
        self.setVisible(flagged)
        return flagged

    def dismiss(self) -> None:
        self._dismissed = self._key
        self.hide()

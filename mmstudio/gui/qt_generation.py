"""The "Generation" section of the Caption and Ask panels: the user's settings over the checkpoint's own.

Every control starts at "model's": the checkpoint's generation_config decides (models/generation.py). What
the user changes is remembered per model, so a beam search chosen for one checkpoint does not follow the
user to the next.
"""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import quote

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mmstudio.errors import SettingsError
from mmstudio.models.generation import DEFAULT_MAX_NEW_TOKENS, GenerationOptions

MODELS = "model's"


def _spin(low: int, high: int, tip: str, special: str = MODELS) -> QSpinBox:
    """A spin box whose lowest value means "not set"."""
    box = QSpinBox()
    box.setRange(low, high)
    box.setSpecialValueText(special)
    box.setToolTip(tip)
    return box


def _double(high: float, step: float, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(0.0, high)
    box.setDecimals(2)
    box.setSingleStep(step)
    box.setSpecialValueText(MODELS)  # 0: not set (none of these settings means anything at 0)
    box.setToolTip(tip)
    return box


class GenerationBox(QWidget):
    """A folding form of generation settings; `options()` is what a request carries."""

    changed = Signal()

    def __init__(self, task_key: str, prompt: bool, parent=None):
        super().__init__(parent)
        self._key = task_key  # "caption" or "vqa": settings are kept per task and model
        self._settings = None
        self._model: str | None = None
        self._loading = False
        self._generates = True  # False for a model that picks its answer from a list (set_model)
        self.toggle = QToolButton()
        self.toggle.setText("Generation ▸")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Length, beams, sampling" + (" and a caption prompt" if prompt else "")
                               + "; unset, each is the model's own setting")
        self.summary = QLabel()
        self.summary.setStyleSheet("color: palette(mid);")
        self.body = QWidget()
        self.body.setVisible(False)
        self.toggle.toggled.connect(self._fold)

        self.max_new = _spin(0, 512, f"At most this many new tokens (model's: its generation_config, else "
                                     f"{DEFAULT_MAX_NEW_TOKENS})")
        self.min_new = _spin(-1, 512, "At least this many new tokens")
        self.beams = _spin(0, 16, "Beam search with this many beams (1: greedy, or sampling)")
        self.repetition = _double(5.0, 0.1, "Above 1 makes repeated tokens less likely")
        self.no_repeat = _spin(-1, 10, "Never repeat an n-gram of this size (0: no rule)")
        self.decoding = QComboBox()
        for text, value in ((MODELS, None), ("most likely (greedy or beams)", False), ("sample", True)):
            self.decoding.addItem(text, value)
        self.decoding.setToolTip("Sampling picks each token at random by its probability: varied, not repeatable "
                                 "unless a seed is set")
        self.temperature = _double(5.0, 0.1, "Sampling: below 1 sharper, above 1 more varied")
        self.top_p = _double(1.0, 0.05, "Sampling: from the smallest set of tokens with this much probability")
        self.top_k = _spin(-1, 1000, "Sampling: from the k most likely tokens (0: all)")
        self.seed = _spin(-1, 2**31 - 1, "Sampling: the same seed gives the same text", special="random")
        self.prompt = QLineEdit() if prompt else None
        self.reset = QPushButton("Model's settings")
        self.reset.setToolTip("Clear every setting: the model's own generation_config decides")
        self.reset.clicked.connect(self.clear)

        form = QFormLayout(self.body)
        form.setContentsMargins(8, 0, 0, 0)
        if self.prompt is not None:
            self.prompt.setPlaceholderText("starts with… e.g. a picture of")
            self.prompt.setToolTip("The text each caption starts with (conditional captioning)")
            form.addRow("Prompt", self.prompt)
        form.addRow("New tokens", _row("max", self.max_new, "min", self.min_new))
        form.addRow("Beams", self.beams)
        form.addRow("Repetition penalty", _row(self.repetition, "no-repeat n-gram", self.no_repeat))
        form.addRow("Decoding", self.decoding)
        form.addRow("Sampling", _row("temperature", self.temperature, "top-p", self.top_p, stretch=1))
        form.addRow("top-k", _row(self.top_k, "seed", self.seed, stretch=1))
        form.addRow("", self.reset)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.toggle)
        header.addWidget(self.summary, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.body)
        for box in (self.max_new, self.min_new, self.beams, self.no_repeat, self.top_k, self.seed):
            box.valueChanged.connect(self._on_change)
        for box in (self.repetition, self.temperature, self.top_p):
            box.valueChanged.connect(self._on_change)
        self.decoding.currentIndexChanged.connect(self._on_change)
        if self.prompt is not None:
            self.prompt.textChanged.connect(self._on_change)
        self._on_change()

    # ------------------------------------------------------------ settings

    def options(self) -> GenerationOptions:
        """The settings as a request carries them; a combination out of range falls back to unset lengths."""
        def value(box, unset):
            return None if box.value() == unset else box.value()

        prompt = " ".join(self.prompt.text().split()) if self.prompt is not None else ""
        options = GenerationOptions(
            max_new_tokens=value(self.max_new, 0), min_new_tokens=value(self.min_new, -1),
            num_beams=value(self.beams, 0), repetition_penalty=value(self.repetition, 0.0),
            no_repeat_ngram_size=value(self.no_repeat, -1), do_sample=self.decoding.currentData(),
            temperature=value(self.temperature, 0.0), top_p=value(self.top_p, 0.0), top_k=value(self.top_k, -1),
            seed=value(self.seed, -1), prompt=prompt or None)
        try:
            options.validate()
        except SettingsError:  # min above max: the spin boxes allow it; the model's own lengths then decide
            options = replace(options, min_new_tokens=None)
        return options

    def set_options(self, options: GenerationOptions) -> None:
        self._loading = True
        try:
            self.max_new.setValue(options.max_new_tokens or 0)
            self.min_new.setValue(-1 if options.min_new_tokens is None else options.min_new_tokens)
            self.beams.setValue(options.num_beams or 0)
            self.repetition.setValue(options.repetition_penalty or 0.0)
            self.no_repeat.setValue(-1 if options.no_repeat_ngram_size is None else options.no_repeat_ngram_size)
            self.decoding.setCurrentIndex(max(0, self.decoding.findData(options.do_sample)))
            self.temperature.setValue(options.temperature or 0.0)
            self.top_p.setValue(options.top_p or 0.0)
            self.top_k.setValue(-1 if options.top_k is None else options.top_k)
            self.seed.setValue(-1 if options.seed is None else options.seed)
            if self.prompt is not None:
                self.prompt.setText(options.prompt or "")
            self._on_change()  # the summary and the sampling boxes; not a change of the user's: no `changed`
        finally:
            self._loading = False

    def clear(self) -> None:
        """Back to the model's own settings: the user's change, remembered and announced."""
        self.set_options(GenerationOptions())
        self._commit()

    # -------------------------------------------------- remembered per model

    def attach(self, settings, model: str) -> None:
        """Keep the settings in `settings` (qt_settings.Settings), per model, starting with `model`'s."""
        self._settings = settings
        self.set_model(model)

    def set_model(self, model: str, generates: bool = True) -> None:
        """Show the settings remembered for `model` (the model now loaded for the task).

        generates: False for a model that picks its answer from a list (ViLT): the settings mean nothing to it.
        """
        self._model = model
        self._generates = generates
        self.toggle.setEnabled(generates)
        if not generates:
            self.toggle.setChecked(False)
        saved = self._settings.get(self._settings_key()) if self._settings is not None else ""
        try:
            options = GenerationOptions.from_dict(json.loads(saved)) if saved else GenerationOptions()
        except (ValueError, TypeError, SettingsError):  # a corrupt or foreign value: the model's own settings
            options = GenerationOptions()
        self.set_options(options)

    def _settings_key(self) -> str:
        return f"generation/{self._key}/{quote(self._model, safe='')}"  # a folder's slashes are not groups

    # --------------------------------------------------------------- display

    def _fold(self, open_: bool) -> None:
        self.body.setVisible(open_)
        self.toggle.setText("Generation ▾" if open_ else "Generation ▸")

    def _on_change(self, *_args) -> None:
        sampling = self.decoding.currentData() is not False
        for box in (self.temperature, self.top_p, self.top_k, self.seed):
            box.setEnabled(sampling)
        options = self.options()
        chosen = options.chosen()
        if not self._generates:
            self.summary.setText("this model picks its answer from a list: nothing to set")
        else:
            self.summary.setText(_summary(options) if chosen else "the model's own settings")
        if not self._loading:
            self._commit()

    def _commit(self) -> None:
        """Remember the settings for the model and say they changed."""
        if self._settings is not None and self._model is not None:
            self._settings.set(self._settings_key(), json.dumps(self.options().chosen()))
        self.changed.emit()


def _row(*parts, stretch: int = 0) -> QHBoxLayout:
    """One form row of several controls; a string is a label between them."""
    row = QHBoxLayout()
    for part in parts:
        if isinstance(part, str):
            row.addWidget(QLabel(part))
        else:
            row.addWidget(part, stretch)
    return row


def _summary(options: GenerationOptions) -> str:
    parts = []
    if options.prompt:
        parts.append(f"“{options.prompt} …”")
    if options.max_new_tokens is not None:
        parts.append(f"≤ {options.max_new_tokens} tokens")
    if options.num_beams is not None:
        parts.append(f"{options.num_beams} beams")
    if options.do_sample:
        parts.append("sampling" + (f", seed {options.seed}" if options.seed is not None else ""))
    elif options.do_sample is False:
        parts.append("most likely")
    shown = {"prompt", "max_new_tokens", "num_beams", "do_sample", "seed"}
    others = len(set(options.chosen()) - shown)
    if others:
        parts.append(f"{others} more setting{'s' if others > 1 else ''}")
    return ", ".join(parts)

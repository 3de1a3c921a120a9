"""Choosing models (built-in, a local folder, the HF cache), the device and the precision; getting new ones."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from mmstudio.gui.qt_model_catalog import ModelCatalog
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.catalog import available_models
from mmstudio.validation import DTYPES

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISION_HINTS = {
    "fp32": "fp32: full precision, the reference.",
    "fp16": "fp16: half the memory, fast on GPUs; slow on most CPUs.",
    "bf16": "bf16: half the memory. On GPUs, and on CPUs with AVX-512 BF16 or AMX, about 3-4x faster than fp32 "
            "for base-size models; on other CPUs slower. Answers within a point of fp32 on the built-in models.",
    "int8": "int8: the CPU only (Linear layers quantized after loading): about 3-4x faster than fp32 for "
            "base-size models on any recent CPU. Answers within a point of fp32 on the built-in models.",
}
TASK_LABELS = {Task.CAPTION: "Captioning", Task.VQA: "Questions (VQA)", Task.ITM: "Matching (ITM/ITC)"}


class ModelDialog(QDialog):
    def __init__(self, current: dict[Task, str], options: LoadOptions, parent=None, client=None):
        super().__init__(parent)
        self.setWindowTitle("Models and device")
        self.combos: dict[Task, QComboBox] = {}  # the model choice of each task
        outer = QVBoxLayout(self)
        chosen = QWidget()
        form = QFormLayout(chosen)
        form.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(chosen)
        note = QLabel("The built-in models know only Shapes World (coloured shapes on a plain background). "
                      "For photos, choose a BLIP, ViT-GPT2, ViLT, CLIP or SigLIP checkpoint: a folder, a model in "
                      "the Hugging Face cache, or a hub id such as Salesforce/blip-image-captioning-base; "
                      "below, download one the studio knows.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555")
        form.addRow(note)
        entries = available_models()
        for task in Task:
            combo = QComboBox()
            combo.setEditable(True)
            combo.setToolTip("A built-in model, a model in the Hugging Face cache, or a folder")
            for entry in entries:
                if task in entry.tasks:
                    combo.addItem(f"{entry.name}  ({entry.source})", entry.name)
                elif entry.problem:  # shown, so the user learns why a model is missing, but not choosable
                    combo.addItem(f"{entry.name}  ({entry.source}, broken)", None)
                    combo.setItemData(combo.count() - 1, entry.problem, Qt.ItemDataRole.ToolTipRole)
                    combo.model().item(combo.count() - 1).setEnabled(False)
            index = combo.findData(current[task])
            if index < 0:
                combo.addItem(current[task], current[task])
                index = combo.count() - 1
            combo.setCurrentIndex(index)
            browse = QPushButton("Folder…")
            browse.setToolTip("Use a model saved in a folder (config.json and .safetensors weights)")
            browse.clicked.connect(lambda _=False, c=combo: self._browse(c))
            row = QWidget()
            layout = QHBoxLayout(row)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(combo, 1)
            layout.addWidget(browse)
            form.addRow(TASK_LABELS[task], row)
            self.combos[task] = combo
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(options.device)
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        for index, name in enumerate(DTYPES):
            self.dtype.setItemData(index, PRECISION_HINTS[name], Qt.ItemDataRole.ToolTipRole)
        self.dtype.setCurrentText(options.dtype)
        self.precision_hint = QLabel()
        self.precision_hint.setWordWrap(True)
        self.precision_hint.setStyleSheet("color: #555")
        self.dtype.currentTextChanged.connect(lambda name: self.precision_hint.setText(PRECISION_HINTS[name]))
        self.precision_hint.setText(PRECISION_HINTS[self.dtype.currentText()])
        self.threads = QSpinBox()
        self.threads.setRange(0, 1024)
        self.threads.setSpecialValueText("all cores")  # 0: torch's default, the machine's cores
        self.threads.setValue(options.threads)
        self.threads.setToolTip("CPU threads the models run on; fewer leave cores to other work (a training job)")
        form.addRow("Device", self.device)
        form.addRow("Precision", self.dtype)
        form.addRow("", self.precision_hint)
        form.addRow("CPU threads", self.threads)
        form.addRow(QLabel("A model that fails to load leaves the current one in place."))
        self.catalog = None
        if client is not None:  # downloads need the client's background thread
            box = QGroupBox("Get a model")
            inner = QVBoxLayout(box)
            self.catalog = ModelCatalog(client)
            self.catalog.downloaded.connect(self._offer)
            inner.addWidget(self.catalog)
            outer.addWidget(box, 1)
            self.resize(900, 640)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        outer.addWidget(buttons)

    def _offer(self, repo_id: str, tasks) -> None:
        """A model just downloaded: chosen for its task, to load with OK."""
        for task in Task:
            if task.value in tasks:
                combo = self.combos[task]
                index = combo.findData(repo_id)
                if index < 0:
                    combo.addItem(f"{repo_id}  (hf-cache)", repo_id)
                    index = combo.count() - 1
                combo.setCurrentIndex(index)

    def _browse(self, combo: QComboBox) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder")
        if folder:
            combo.addItem(folder, folder)
            combo.setCurrentIndex(combo.count() - 1)

    def chosen_models(self) -> dict[Task, str]:
        chosen = {}
        for task, combo in self.combos.items():
            data = combo.currentData()
            text = combo.currentText().strip()
            chosen[task] = data if data and combo.itemText(combo.currentIndex()) == text else text
        return chosen

    def chosen_options(self) -> LoadOptions:
        return LoadOptions(device=self.device.currentText(), dtype=self.dtype.currentText(),
                           threads=self.threads.value())

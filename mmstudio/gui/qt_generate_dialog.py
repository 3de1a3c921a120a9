""""Generate Shapes World data": writes a training set in a subprocess, the window stays responsive."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from mmstudio.errors import MMStudioError
from mmstudio.gui.qt_jobs import JobRunner
from mmstudio.jobs import JobProcess, prepare_generate
from mmstudio.world import COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES
from mmstudio.world.config import GenerateConfig


class GenerateDataDialog(QDialog):
    """Asks for count, seed and folder, then runs `mmstudio world generate`; `folder` is set on success."""

    def __init__(self, default_folder: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Generate Shapes World data")
        self.folder: Path | None = None
        self.process: JobProcess | None = None
        self.runner = JobRunner(self)
        self.runner.event.connect(self._on_event)
        self._tail: list[str] = []
        self.count = QSpinBox()
        self.count.setRange(1, 1_000_000)
        self.count.setValue(2000)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(100)
        self.new_concepts = QCheckBox("include shapes and colors the built-in models never saw (hexagon, pink)")
        self.out = QLineEdit(str(default_folder))
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.addWidget(self.out, 1)
        row_layout.addWidget(browse)
        form = QFormLayout()
        form.addRow("Scenes", self.count)
        form.addRow("Seed", self.seed)
        form.addRow("", self.new_concepts)
        form.addRow("Folder", row)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.status = QLabel("Scenes come with captions, questions, hard negatives and object boxes.")
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.generate_button = self.buttons.addButton("Generate", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.busy)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the new dataset", self.out.text())
        if folder:
            self.out.setText(folder)

    def start(self) -> None:
        out = Path(self.out.text().strip()).expanduser()
        if (out / "metadata.jsonl").exists():
            self.status.setText(f"{out} already holds a dataset; choose a new folder.")
            return
        extra = self.new_concepts.isChecked()
        config = GenerateConfig(out=out, count=self.count.value(), seed=self.seed.value(), workers=2,
                                shapes=SHAPES + EXTRA_SHAPES if extra else SHAPES,
                                colors=COLORS + EXTRA_COLORS if extra else COLORS)
        self._out = out
        self._tail = []
        try:  # the same process runner as training jobs; it writes the config into `out` first
            self.process = self.runner.start(str(out), prepare_generate(config))
        except MMStudioError as exc:  # `out` cannot hold the config file: a file, read-only, full
            self.status.setText(f"Generation failed: {exc}")
            return
        self.generate_button.setEnabled(False)
        self.busy.show()
        self.status.setText(f"Writing {self.count.value()} scenes to {out}…")

    def _on_event(self, _key: str, event: dict) -> None:
        if event.get("event") == "output":
            self._tail = [*self._tail[-20:], event.get("text", "")]
        elif event.get("event") == "error":
            self._tail.append(event.get("message", ""))
        elif event.get("event") == "exit":
            self._finished(event.get("returncode"), event.get("stderr", ""))

    def _finished(self, code: int | None, stderr: str) -> None:
        self.busy.hide()
        self.process = None
        if code == 0:
            self.folder = self._out
            self.accept()
            return
        self.generate_button.setEnabled(True)
        lines = [line for line in (*self._tail, *stderr.splitlines()) if line.strip()]
        self.status.setText(f"Generation failed: {lines[-1] if lines else f'exit code {code}'}")

    def reject(self) -> None:
        if self.process is not None and self.process.running:
            self.process.kill()
            self.process.wait(3)
        super().reject()

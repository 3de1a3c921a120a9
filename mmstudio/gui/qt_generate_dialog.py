""""Generate Shapes World data": writes a training set in a subprocess, the window stays responsive."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QProcess
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

from mmstudio.jobs import generate_command


class GenerateDataDialog(QDialog):
    """Asks for count, seed and folder, then runs `mmstudio world generate`; `folder` is set on success."""

    def __init__(self, default_folder: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Generate Shapes World data")
        self.folder: Path | None = None
        self.process: QProcess | None = None
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
        argv = generate_command(out, self.count.value(), self.seed.value(),
                                new_concepts=self.new_concepts.isChecked())
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.finished.connect(lambda code, _status: self._finished(out, code))
        self.process.start(argv[0], argv[1:])
        self.generate_button.setEnabled(False)
        self.busy.show()
        self.status.setText(f"Writing {self.count.value()} scenes to {out}…")

    def _finished(self, out: Path, code: int) -> None:
        self.busy.hide()
        output = bytes(self.process.readAll()).decode(errors="replace").strip()
        if code == 0:
            self.folder = out
            self.accept()
            return
        self.generate_button.setEnabled(True)
        self.status.setText(f"Generation failed: {output.splitlines()[-1] if output else f'exit code {code}'}")

    def reject(self) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.kill()
            self.process.waitForFinished(3000)
        super().reject()

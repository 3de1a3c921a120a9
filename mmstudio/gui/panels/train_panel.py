"""Train panel: check data, launch a fine-tuning job, watch it, stop, kill, resume, use the result.

The form builds a TrainConfig: the common settings are always shown, every other field of the config
is in the collapsible "Advanced" section, and "Load config…"/"Save config…" read and write the same
JSON document a job is started with.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from mmstudio.errors import MMStudioError
from mmstudio.gui.qt_errors import describe
from mmstudio.gui.qt_generate_dialog import GenerateDataDialog
from mmstudio.gui.qt_jobs import JobRunner
from mmstudio.gui.qt_loss_curve import LossCurve
from mmstudio.gui.worker import Ticket
from mmstudio.jobs import JobProcess, JobRecord, JobStore, prepare_launch, resume_config
from mmstudio.models.base import Task
from mmstudio.training.config import TrainConfig

BASES = (("built-in model of the task", None), ("untrained (from scratch)", "scratch"))
LOADED = "loaded"  # the base choice that follows the model loaded for the task
TRISTATE = (("auto", None), ("on", True), ("off", False))  # the choices of a `bool | None` setting
DEFAULTS = TrainConfig(task=Task.CAPTION, data=Path("data"), out=Path("out"))  # the Advanced widgets start here


class TrainPanel(QWidget):
    load_model_requested = Signal(object, str)  # Task, folder
    compare_requested = Signal(object, str)  # Task, folder of the fine-tuned model
    message = Signal(str)
    error = Signal(str)

    def __init__(self, client, store: JobStore | None = None, parent=None):
        super().__init__(parent)
        self.client = client  # run(what, function, ...) -> Ticket: checking runs off the GUI thread
        self.store = store or JobStore()
        self.preparing: Ticket | None = None
        self.runner = JobRunner(self)
        self.runner.event.connect(self._on_event)
        self.processes: dict[str, JobProcess] = {}
        self._shown: str | None = None

        self.task = QComboBox()
        for task in Task:
            self.task.addItem(task.value, task)
        self.base = QComboBox()
        for label, value in BASES:
            self.base.addItem(label, value)
        self.base.insertItem(1, "the loaded model", LOADED)
        self.base.setEditable(False)
        self.loaded: dict[Task, str] = {}
        self.task.currentIndexChanged.connect(self._label_loaded_choice)
        base_browse = QPushButton("Folder…")
        base_browse.clicked.connect(self._browse_base)
        self.data = QLineEdit()
        # Short placeholders (the field is about 220 px wide at 1000x700); the whole story in the tooltip.
        self.data.setPlaceholderText("dataset folder")
        self.data.setToolTip("A dataset folder: images and a metadata.jsonl or metadata.csv")
        data_browse = QPushButton("Folder…")
        data_browse.clicked.connect(lambda: self._browse_into(self.data, "Dataset folder"))
        self.generate_button = QPushButton("Generate…")
        self.generate_button.setToolTip("Generate Shapes World data (optionally with hexagon and pink) to train on")
        self.generate_button.clicked.connect(self.generate_data)
        self.eval_data = QLineEdit()
        self.eval_data.setPlaceholderText("optional")
        self.eval_data.setToolTip("Optional: a held-out dataset for the eval loss and metrics")
        eval_browse = QPushButton("Folder…")
        eval_browse.clicked.connect(lambda: self._browse_into(self.eval_data, "Evaluation dataset folder"))
        self.eval_every = QSpinBox()
        self.eval_every.setRange(0, 1_000_000)
        self.eval_every.setSpecialValueText("at the end only")
        self.eval_every.setSuffix(" steps")
        self.steps = QSpinBox()
        self.steps.setRange(0, 1_000_000)
        self.steps.setSpecialValueText("from epochs (Advanced)")
        self.steps.setValue(200)
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(16)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-5)
        self.lr.setValue(1e-4)
        self.lora = QCheckBox("LoRA adapters (small and fast)")
        self.lora.setToolTip("Train PEFT LoRA adapters on the attention layers instead of every weight")
        self.out = QLineEdit()
        self.out.setPlaceholderText("a new folder")
        self.out.setToolTip("A new folder for the trained model (default: ~/mmstudio-runs/TASK-DATE-TIME)")
        out_browse = QPushButton("Folder…")
        out_browse.clicked.connect(lambda: self._browse_into(self.out, "Output folder"))

        form = QFormLayout()
        form.addRow("Task", self.task)
        form.addRow("Start from", _row(self.base, base_browse))
        form.addRow("Dataset", _row(self.data, data_browse, self.generate_button))
        form.addRow("Eval dataset", _row(self.eval_data, eval_browse))
        form.addRow("Evaluate every", self.eval_every)
        form.addRow("Steps", self.steps)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("", self.lora)
        form.addRow("Output", _row(self.out, out_browse))
        self._build_advanced()

        self.check_button = QPushButton("Check data")
        self.check_button.setToolTip("Validate the dataset and show every bad row before anything starts")
        self.launch_button = QPushButton("Launch")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Save a checkpoint and end the job")
        self.kill_button = QPushButton("Kill")
        self.kill_button.setToolTip("End the job and everything it started, now")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the selected job from its latest checkpoint")
        self.use_button = QPushButton("Load this model")
        self.use_button.setToolTip("Use the selected job's model in the caption, ask or match panel")
        self.compare_button = QPushButton("Before / after")
        self.compare_button.setToolTip("The base and the fine-tuned model on the selected image, side by side")
        self.compare_button.clicked.connect(lambda: self._with_model(self.compare_requested))
        self.check_button.clicked.connect(self.check)
        self.launch_button.clicked.connect(self.launch)
        self.stop_button.clicked.connect(lambda: self._signal_selected("stop"))
        self.kill_button.clicked.connect(lambda: self._signal_selected("kill"))
        self.resume_button.clicked.connect(self.resume_selected)
        self.use_button.clicked.connect(lambda: self._with_model(self.load_model_requested))
        buttons = QGridLayout()
        for i, button in enumerate((self.check_button, self.launch_button, self.stop_button, self.kill_button,
                                    self.resume_button, self.use_button, self.compare_button)):
            buttons.addWidget(button, i // 4, i % 4)

        self.progress = QProgressBar()
        self.progress.hide()  # until there is a job to show: an empty bar says nothing
        self.progress_label = QLabel("")
        self.curve = LossCurve()
        self.report = QLabel("")
        self.report.setWordWrap(True)
        self.report.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.jobs = QListWidget()
        self.jobs.setToolTip("Past and running jobs (kept between sessions)")
        self.jobs.currentItemChanged.connect(lambda item, _prev: self._show_job(item.data(Qt.ItemDataRole.UserRole)
                                                                                if item else None))
        # Everything scrolls as one page: with Advanced open the panel is taller than a 700-pixel window.
        content = QWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # it fits the tab's width
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.addLayout(form)
        layout.addWidget(self.advanced_row)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.curve, 1)
        layout.addWidget(self.report)
        layout.addWidget(QLabel("Jobs"))
        layout.addWidget(self.jobs)
        self._refresh_jobs()
        self._update_buttons()

    def _build_advanced(self) -> None:
        """Every other TrainConfig field, in two columns under a toggle (hidden at first: the defaults suit)."""
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setToolTip("Every other setting of the run; the defaults suit most runs")
        self.advanced_toggle.toggled.connect(self._show_advanced)
        d = DEFAULTS

        self.epochs = _double(0.01, 100_000, 2, d.epochs, "Passes over the data, when Steps is 'from epochs'")
        self.warmup = _double(0.0, 0.99, 3, d.warmup_ratio, "Share of the steps that warm the learning rate up")
        self.warmup.setSingleStep(0.01)
        self.weight_decay = _double(0.0, 10.0, 4, d.weight_decay, "AdamW weight decay")
        self.weight_decay.setSingleStep(0.01)
        self.seed = _spin(0, 2**31 - 1, d.seed, "Seed of the model's start, the batches and their items")
        self.scratch_size = QComboBox()
        self.scratch_size.addItems(["small", "small-fine", "tiny"])
        self.scratch_size.setCurrentText(d.size)
        self.scratch_size.setToolTip("Architecture of a model trained from scratch (ignored for other bases)")
        self.lora_rank = _spin(1, 1024, d.lora_rank, "Rank of the LoRA adapters (with LoRA on)")
        self.grounding = _tristate(d.grounding, "Auxiliary patch-label loss from object boxes "
                                                "(auto: on when training from scratch on data with boxes)")
        self.vision_layers = _spin(-1, 1024, -1, "Top layers of the vision tower that learn; the rest stay as the "
                                   "base has them (faster; the model keeps seeing as its base did; not from scratch)")
        self.vision_layers.setSpecialValueText("all")
        self.bf16 = _tristate(d.bf16, "bf16 mixed precision (auto: where the hardware runs it fast)")
        self.threads = _spin(0, 1024, 0, "CPU threads for torch")
        self.threads.setSpecialValueText("torch's default")
        self.max_minutes = _double(0.0, 1_000_000, 1, 0.0, "Stop with a checkpoint after this much training time")
        self.max_minutes.setSpecialValueText("no limit")
        self.max_minutes.setSuffix(" min")
        self.questions = _spin(1, 64, d.questions_per_image, "VQA: questions of each image in a batch")
        self.negatives = _spin(0, 64, d.negatives_per_image, "ITM: written hard negatives of each image in a batch")
        self.order_share = _double(0.0, 1.0, 2, d.order_share,
                                   "ITM: how often a negative is the caption's words in another order")
        self.order_share.setSingleStep(0.05)
        self.partial_share = _double(0.0, 1.0, 2, d.partial_share,
                                     "ITM on data with objects: share of images that also teach the ITM head "
                                     "a true partial description of them (some of their objects) and a near miss")
        self.partial_share.setSingleStep(0.05)
        self.partial_itc = _double(0.0, 10.0, 2, d.partial_itc_weight,
                                   "ITM: weight of the embedding (ITC) loss over those partial descriptions, beside "
                                   "the captions' (0: only the matching head learns them)")
        self.partial_itc.setSingleStep(0.05)
        self.rows = _spin(0, 2**31 - 1, 0, "Train on the first N rows of the dataset only")
        self.rows.setSpecialValueText("all")
        self.pixel_cache = QLineEdit()
        self.pixel_cache.setPlaceholderText("optional")
        self.pixel_cache.setToolTip("Keep the resized training images here; later runs on the same files reuse them")
        cache_browse = QPushButton("Folder…")
        cache_browse.clicked.connect(lambda: self._browse_into(self.pixel_cache, "Pixel cache folder"))
        self.eval_samples = _spin(1, 1_000_000, d.eval_samples, "Rows of the eval dataset each evaluation uses")
        self.save_every = _spin(0, 1_000_000, 0, "Steps between checkpoints")
        self.save_every.setSpecialValueText("auto (a fifth of the steps)")
        self.log_every = _spin(0, 1_000_000, 0, "Steps between points of the loss curve")
        self.log_every.setSpecialValueText("auto (a hundredth of the steps)")
        self.resume = QCheckBox("resume the run in the output folder")
        self.resume.setToolTip("Continue from the output folder's latest complete checkpoint (a run started "
                               "elsewhere too); past jobs resume with the Resume button")
        self.allow_missing = QCheckBox("allow a base that lacks weights")
        self.allow_missing.setToolTip("Start from a base whose folder lacks weights its config asks for "
                                      "(those parts start random)")
        load = QPushButton("Load config…")
        load.setToolTip("Fill the form from a train config file (JSON), e.g. a run's mmstudio-job.json")
        load.clicked.connect(self._load_config_file)
        save = QPushButton("Save config…")
        save.setToolTip("Write the form as a train config file: mmstudio train --config FILE runs it")
        save.clicked.connect(self._save_config_file)
        self.advanced_row = _row(self.advanced_toggle, load, save)
        self.advanced_row.layout().insertStretch(1, 1)

        columns = (
            (("Epochs", self.epochs), ("Warmup", self.warmup), ("Weight decay", self.weight_decay),
             ("Seed", self.seed), ("Scratch size", self.scratch_size), ("LoRA rank", self.lora_rank),
             ("Threads", self.threads)),
            (("Grounding", self.grounding), ("Vision layers trained", self.vision_layers), ("bf16", self.bf16),
             ("Questions/image", self.questions), ("Negatives/image", self.negatives),
             ("Order share", self.order_share), ("Partial share", self.partial_share),
             ("Partial ITC", self.partial_itc), ("Rows", self.rows), ("Time limit", self.max_minutes)),
            (("Eval samples", self.eval_samples), ("Save every", self.save_every), ("Log every", self.log_every),
             ("Pixel cache", _row(self.pixel_cache, cache_browse)), ("", self.resume), ("", self.allow_missing)),
        )
        self.advanced = QWidget()
        # One label-widget pair a row: the panel is about 420 px wide at 1000x700, where pairs side by side
        # were cut off; the page scrolls instead.
        form = QFormLayout(self.advanced)
        form.setContentsMargins(0, 0, 0, 0)
        for rows in columns:
            for label, widget in rows:
                form.addRow(label, widget)
        self.advanced.hide()

    def _show_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # ---------------------------------------------------------------- config

    def config(self) -> TrainConfig:
        task = Task(self.task.currentData())
        out = self.out.text().strip()
        if not out:
            out = str(Path.home() / "mmstudio-runs" / f"{task.value}-{time.strftime('%Y%m%d-%H%M%S')}")
            self.out.setText(out)
        if not self.data.text().strip():
            raise MMStudioError("Choose a dataset folder first.")
        eval_data = self.eval_data.text().strip()
        pixel_cache = self.pixel_cache.text().strip()
        base = self.base.currentData()
        if base == LOADED:
            base = self.loaded.get(task)  # None: the built-in model, which is what is loaded
        steps = self.steps.value() or None  # 0: from epochs
        # Auto saving and logging follow the length; from epochs the length is known only once the data is read.
        save_every = self.save_every.value() or (max(10, steps // 5) if steps else DEFAULTS.save_every)
        log_every = self.log_every.value() or (max(1, steps // 100) if steps else DEFAULTS.log_every)
        return TrainConfig(task=task, data=Path(self.data.text().strip()), out=Path(out),
                           base=base, steps=steps, epochs=self.epochs.value(), batch_size=self.batch.value(),
                           learning_rate=self.lr.value(), warmup_ratio=self.warmup.value(),
                           weight_decay=self.weight_decay.value(), seed=self.seed.value(),
                           resume=self.resume.isChecked(),
                           eval_data=Path(eval_data) if eval_data else None,
                           eval_every=self.eval_every.value() if eval_data else 0,
                           eval_samples=self.eval_samples.value(), save_every=save_every, log_every=log_every,
                           max_minutes=self.max_minutes.value() or None, size=self.scratch_size.currentText(),
                           questions_per_image=self.questions.value(), negatives_per_image=self.negatives.value(),
                           order_share=self.order_share.value(),
                           partial_share=self.partial_share.value(), partial_itc_weight=self.partial_itc.value(),
                           rows=self.rows.value() or None,
                           pixel_cache=Path(pixel_cache) if pixel_cache else None, lora=self.lora.isChecked(),
                           lora_rank=self.lora_rank.value(), threads=self.threads.value() or None,
                           bf16=self.bf16.currentData(), grounding=self.grounding.currentData(),
                           allow_missing_weights=self.allow_missing.isChecked(),
                           vision_trainable_layers=None if self.vision_layers.value() < 0
                           else self.vision_layers.value())

    def set_config(self, config: TrainConfig) -> None:
        """Show a config in the form (a loaded config file): `config()` then gives it back."""
        self.task.setCurrentIndex(self.task.findData(Task(config.task)))
        if config.base is None:
            self.base.setCurrentIndex(0)  # the built-in model
        else:
            if self.base.findData(config.base) < 0:
                self.base.addItem(config.base, config.base)
            self.base.setCurrentIndex(self.base.findData(config.base))
        self.data.setText(str(config.data))
        self.out.setText(str(config.out))
        self.eval_data.setText(str(config.eval_data) if config.eval_data else "")
        self.eval_every.setValue(config.eval_every)
        self.steps.setValue(config.steps or 0)
        self.epochs.setValue(config.epochs)
        self.batch.setValue(config.batch_size)
        self.lr.setValue(config.learning_rate)
        self.warmup.setValue(config.warmup_ratio)
        self.weight_decay.setValue(config.weight_decay)
        self.seed.setValue(config.seed)
        self.resume.setChecked(config.resume)
        self.eval_samples.setValue(config.eval_samples)
        self.save_every.setValue(config.save_every)
        self.log_every.setValue(config.log_every)
        self.max_minutes.setValue(config.max_minutes or 0.0)
        self.scratch_size.setCurrentText(config.size)
        self.questions.setValue(config.questions_per_image)
        self.negatives.setValue(config.negatives_per_image)
        self.order_share.setValue(config.order_share)
        self.partial_share.setValue(config.partial_share)
        self.partial_itc.setValue(config.partial_itc_weight)
        self.rows.setValue(config.rows or 0)
        self.pixel_cache.setText(str(config.pixel_cache) if config.pixel_cache else "")
        self.lora.setChecked(config.lora)
        self.lora_rank.setValue(config.lora_rank)
        self.threads.setValue(config.threads or 0)
        self.bf16.setCurrentIndex(self.bf16.findData(config.bf16) if config.bf16 is not None else 0)
        self.grounding.setCurrentIndex(self.grounding.findData(config.grounding) if config.grounding is not None
                                       else 0)
        self.allow_missing.setChecked(config.allow_missing_weights)
        self.vision_layers.setValue(-1 if config.vision_trainable_layers is None else config.vision_trainable_layers)

    def load_config_file(self, path: Path) -> TrainConfig | None:
        try:
            config = TrainConfig.read(path)
        except MMStudioError as exc:
            self._refuse(exc, "Cannot load the config: ")
            return None
        self.set_config(config)
        self.advanced_toggle.setChecked(True)  # a file may set any field: show them all
        self.message.emit(f"Loaded the settings of {path}")
        return config

    def save_config_file(self, path: Path) -> Path | None:
        try:
            return self.config().write(path)
        except MMStudioError as exc:
            self._refuse(exc, "Cannot save the config: ")
            return None

    def _load_config_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a train config", "", "Train config (*.json)")
        if path:
            self.load_config_file(Path(path))

    def _save_config_file(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the train config", "train-config.json",
                                              "Train config (*.json)")
        if path and self.save_config_file(Path(path)):
            self.message.emit(f"Saved the settings to {path}; run them with: mmstudio train --config {path}")

    def check(self) -> Ticket | None:
        """Validate the data and the base on a background thread; the report says what was found."""
        return self._prepare(self.config, "Checking the data…", self._show_check, refused="")

    def launch(self) -> Ticket | None:
        """Check everything, then start the job (its record is selected in the list once it runs)."""
        return self._prepare(self.config, "Checking the data before launch…", self._start, refused="Launch refused: ")

    def _prepare(self, make_config, what: str, on_ready, *, refused: str) -> Ticket | None:
        """Run `prepare_launch(make_config())` off the GUI thread: it reads every row and loads a tokenizer."""
        if self.preparing is not None:
            self.message.emit("Still checking the previous request…")
            return None
        try:
            config = make_config()
        except MMStudioError as exc:
            self._refuse(exc, refused)
            return None
        ticket = self.client.run(what, prepare_launch, config)
        self.preparing = ticket
        self.report.setText(f"<span style='color:gray'>{_escape(what)}</span>")
        ticket.finished.connect(on_ready)
        ticket.failed.connect(lambda exc: self._refuse(exc, refused))
        ticket.ended.connect(self._prepared)
        self._update_buttons()
        return ticket

    def _prepared(self) -> None:
        self.preparing = None
        self._update_buttons()

    def _refuse(self, exc, prefix: str) -> None:
        title, message = describe(exc)
        if not isinstance(exc, MMStudioError):
            message = f"{title}: {message}"
        self.report.setText(f"<span style='color:#b00'>{_escape(message)}</span>")
        self.error.emit(prefix + message.splitlines()[0])

    def _show_check(self, launch) -> None:
        summary = launch.summary
        extra = f"<br>New words for the vocabulary: {', '.join(summary['new_words'])}" if summary["new_words"] else ""
        self.report.setText(f"Data is valid: {_escape(summary['data'])}<br>Base: {_escape(summary['base'])}{extra}")
        self.message.emit(f"Data is valid: {summary['data']}")  # this also clears an earlier refusal

    def _start(self, launch) -> JobRecord:
        record = self.store.new(launch)
        if self._run(record, launch, "Launch refused: "):
            self.out.clear()  # the next job needs a new folder
            self.message.emit(f"Training job started: {record.out}")  # this also clears an earlier refusal
        self._refresh_jobs(select=record.id)
        return record

    def _run(self, record: JobRecord, launch, refused: str) -> bool:
        """Start the job (it writes its config into the run folder first, which may fail: a full disk)."""
        try:
            self.processes[record.id] = self.runner.start(record.id, launch)
        except MMStudioError as exc:
            record.status, record.message = "failed", str(exc)
            self.store.save()
            self._refuse(exc, refused)
            return False
        return True

    # ------------------------------------------------------------------ jobs

    def selected(self) -> JobRecord | None:
        item = self.jobs.currentItem()
        return self.store.records.get(item.data(Qt.ItemDataRole.UserRole)) if item else None

    def _signal_selected(self, how: str) -> None:
        record = self.selected()
        process = self.processes.get(record.id) if record else None
        if process is not None and process.running:
            getattr(process, how)()
            self.progress_label.setText("Stopping (saving a checkpoint)…" if how == "stop" else "Killed.")

    def resume_selected(self) -> Ticket | None:
        record = self.selected()
        if record is None:
            return None
        return self._prepare(lambda: resume_config(record), "Checking the job before resuming…",
                             lambda launch: self._resume(record, launch), refused="Resume refused: ")

    def _resume(self, record: JobRecord, launch) -> JobRecord:
        record.status = "running"
        record.config = launch.config.to_document()  # the stored config, now with resume and any changes
        self.store.save()
        self._run(record, launch, "Resume refused: ")
        self._refresh_jobs(select=record.id)
        return record

    def _with_model(self, signal) -> None:
        """Emit `signal` with the selected job's task and model folder (its latest checkpoint if unfinished)."""
        record = self.selected()
        if record is None:
            return
        folder = Path(record.out)
        if not (folder / "config.json").is_file():
            checkpoint = record.latest_checkpoint
            if checkpoint is None:
                self.error.emit("This job has no model yet.")
                return
            folder = checkpoint
        signal.emit(Task(record.task), str(folder))

    def _on_event(self, job_id: str, event: dict) -> None:
        record = self.store.records.get(job_id)
        if record is None:
            return
        record.absorb(event)
        kind = event.get("event")
        if kind in ("done", "error", "exit", "eval", "checkpoint"):
            self.store.save()
        if kind == "damaged":  # "checkpoint-4 is damaged (...); resuming from checkpoint-2"
            self.message.emit(event["message"])
        if kind == "exit":
            self.processes.pop(job_id, None)
            self._refresh_jobs(select=self._shown)
            if record.status == "failed":
                self.error.emit(f"Training job failed: {record.message.splitlines()[0] if record.message else ''}")
            else:
                self.message.emit(f"Training job {record.status}: {record.out}")
        if job_id == self._shown:
            self._show_progress(record, event)
        self._update_buttons()

    def _show_progress(self, record: JobRecord, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.progress.show()
            self.progress.setRange(0, event["total"])
            self.progress.setValue(event["step"])
            self.progress_label.setText(f"step {event['step']} / {event['total']} · epoch {event['epoch']:.2f} · "
                                        f"loss {event['loss']:.4f} · ETA {_duration(event['eta'])}")
            self.curve.add_point(event["step"], event["loss"], event["total"])
        elif kind == "eval":
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in event.get("metrics", {}).items())
            self.report.setText(f"Evaluation at step {event['step']}: {metrics}")
            if "eval_loss" in event.get("metrics", {}):
                self.curve.add_eval_point(event["step"], event["metrics"]["eval_loss"])
        elif kind in ("done", "exit", "error"):
            self._show_job(record.id)

    def _show_job(self, job_id: str | None) -> None:
        self._shown = job_id
        record = self.store.records.get(job_id) if job_id else None
        if record is None:
            self.curve.set_points([])
            return
        total = max([p[0] for p in record.curve], default=0)
        self.curve.set_points(record.curve, total, [(e["step"], e["eval_loss"]) for e in record.evals
                                                    if "eval_loss" in e])
        self.progress.setVisible(bool(record.curve))
        if record.curve:
            self.progress.setRange(0, int(total) or 1)
            self.progress.setValue(int(total))
        last_eval = record.evals[-1] if record.evals else {}
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in last_eval.items() if k != "step")
        self.progress_label.setText(f"{record.task} · {record.status} · {record.out}")
        self.report.setText(_escape(record.message) if record.status == "failed" else
                            (f"Last evaluation: {metrics}" if metrics else ""))
        self._update_buttons()

    def _refresh_jobs(self, select: str | None = None) -> None:
        self.jobs.blockSignals(True)
        self.jobs.clear()
        for record in self.store.ordered():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created))
            item = QListWidgetItem(f"{when}  {record.task:<8} {record.status:<9} {Path(record.out).name}")
            item.setData(Qt.ItemDataRole.UserRole, record.id)
            self.jobs.addItem(item)
            if record.id == select:
                self.jobs.setCurrentItem(item)
        self.jobs.blockSignals(False)
        if select:
            self._show_job(select)

    def _update_buttons(self) -> None:
        record = self.selected()
        running = bool(record and record.id in self.processes and self.processes[record.id].running)
        idle = self.preparing is None  # one check at a time: its answer decides what happens next
        self.check_button.setEnabled(idle)
        self.launch_button.setEnabled(idle)
        self.stop_button.setEnabled(running)
        self.kill_button.setEnabled(running)
        self.resume_button.setEnabled(bool(idle and record and not running and record.status != "finished"
                                           and record.latest_checkpoint))
        usable = bool(record and not running and record.status in ("finished", "stopped"))
        self.use_button.setEnabled(usable)
        self.compare_button.setEnabled(usable)

    def shutdown(self) -> None:
        """Closing the app stops running jobs the gentle way: each saves a checkpoint to resume from."""
        for process in self.processes.values():
            process.stop()

    # --------------------------------------------------------------- helpers

    def _browse_into(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title)
        if folder:
            edit.setText(folder)

    def set_loaded_model(self, task: Task, name: str) -> None:
        """The main window tells which model each task runs now: "the loaded model" starts from it."""
        self.loaded[Task(task)] = name
        self._label_loaded_choice()

    def _label_loaded_choice(self) -> None:
        name = self.loaded.get(Task(self.task.currentData()))
        index = self.base.findData(LOADED)
        self.base.setItemText(index, f"the loaded model ({Path(name).name if name else 'built-in'})")

    def generate_data(self) -> Path | None:
        """Open the generate dialog; a generated dataset becomes the training set."""
        default = Path.home() / "mmstudio-data" / f"shapes-{time.strftime('%Y%m%d-%H%M%S')}"
        dialog = GenerateDataDialog(default, self)
        if dialog.exec() and dialog.folder is not None:
            self.data.setText(str(dialog.folder))
            self.message.emit(f"Generated Shapes World data in {dialog.folder}")
            return dialog.folder
        return None

    def _browse_base(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Base model folder")
        if folder:
            self.base.addItem(folder, folder)
            self.base.setCurrentIndex(self.base.count() - 1)


def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _double(low: float, high: float, decimals: int, value: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setDecimals(decimals)
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _tristate(value: bool | None, tip: str) -> QComboBox:
    combo = QComboBox()
    for label, choice in TRISTATE:
        combo.addItem(label, choice)
    combo.setCurrentIndex([choice for _label, choice in TRISTATE].index(value))
    combo.setToolTip(tip)
    return combo


def _row(*widgets) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if i == 0 else 0)
    return row


def _escape(text: str) -> str:
    import html

    return html.escape(text).replace("\n", "<br>")


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

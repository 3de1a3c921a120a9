"""The model dialog's "Get a model" section: known checkpoints, what the cache holds, downloads with progress.

Downloads run on the client's thread for long calls (mmstudio.models.hub.download), never on the GUI thread;
their progress arrives as a queued signal. Closing the dialog does not stop a download: the window's Esc
(Cancel all) or this section's Cancel does, and the next download of the same model resumes it.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mmstudio.models import hub

COLUMNS = ("Model", "Does", "Size", "Licence", "Here")


class _Relay(QObject):
    """Carries download progress from the download thread to the GUI thread (a queued connection)."""

    progress = Signal(object)  # hub.DownloadProgress


class ModelCatalog(QWidget):
    downloaded = Signal(str, object)  # (hub id, its tasks): cached now, ready to choose
    error = Signal(str)

    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client  # run_cancellable(what, function, ...) -> Ticket
        self.models = hub.known_models()
        self.ticket = None
        self.downloading: str | None = None
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)

        self.table = QTableWidget(len(self.models), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for column in (2, 3, 4):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.cellDoubleClicked.connect(lambda *_: self.download_selected())
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Fetch the selected model's configs, tokenizer and safetensors weights into "
                                        "the Hugging Face cache (an interrupted download resumes)")
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel)
        self.remove_button = QPushButton("Remove…")
        self.remove_button.setToolTip("Delete the selected model from the Hugging Face cache")
        self.remove_button.clicked.connect(self.remove_selected)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.cache_label = QLabel()
        self.cache_label.setStyleSheet("color: #555")
        self.cache_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.cache_label)
        self.refresh()

    # ---------------------------------------------------------------- listing

    def refresh(self) -> None:
        cached = {entry.id: entry for entry in hub.cached()}
        self._cached = cached
        for row, model in enumerate(self.models):
            here = cached.get(model.id)
            if model.id == self.downloading:
                state = "downloading"
            elif here is not None and not here.complete:
                state = f"partial, {here.size / 1e6:,.0f} MB"
            elif here is not None:
                state = f"✓ {here.size / 1e6:,.0f} MB"
            else:
                state = ""
            cells = (model.id, f"{', '.join(model.tasks)}: {model.does}", f"~{model.size_mb:,} MB", model.licence,
                     state)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text if column != 0 else f"{model.id} ({model.family})")
                if column in (2, 4):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        total = sum(entry.size for entry in cached.values())
        where = "offline (HF_HUB_OFFLINE): downloads are off; " if hub.hub_offline() else ""
        self.cache_label.setText(f"{where}Hugging Face cache: {hub.hub_cache()} · {len(cached)} model"
                                 f"{'s' if len(cached) != 1 else ''}, {total / 1e9:.2f} GB")
        self._update_buttons()

    def selected(self) -> hub.KnownModel | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.models[rows[0].row()] if rows else None

    def select(self, repo_id: str) -> None:
        for row, model in enumerate(self.models):
            if model.id == repo_id:
                self.table.selectRow(row)

    def _update_buttons(self) -> None:
        model = self.selected()
        busy = self.downloading is not None
        here = model is not None and model.id in self._cached
        complete = here and self._cached[model.id].complete
        self.download_button.setEnabled(model is not None and not busy and not complete and not hub.hub_offline())
        self.download_button.setText("Resume download" if here and not complete else "Download")
        self.remove_button.setEnabled(here and model.id != self.downloading)
        self.cancel_button.setVisible(busy)
        self.progress.setVisible(busy)

    # -------------------------------------------------------------- download

    def download_selected(self) -> None:
        model = self.selected()
        if model is not None and self.downloading is None:
            self.download(model.id)

    def download(self, repo_id: str) -> None:
        self.downloading = repo_id
        self.progress.setValue(0)
        self.progress.setFormat("asking the hub…")
        self.status.setText(f"Downloading {repo_id}…")
        self.ticket = self.client.run_cancellable(f"Downloading {repo_id}…", hub.download, repo_id,
                                                  progress=self._relay.progress.emit)
        self.ticket.finished.connect(lambda _folder, r=repo_id: self._on_done(r))
        self.ticket.failed.connect(lambda exc, r=repo_id: self._on_failed(r, exc))
        self.ticket.cancelled.connect(lambda r=repo_id: self._on_cancelled(r))
        self.refresh()

    def cancel(self) -> None:
        if self.ticket is not None:
            self.ticket.cancel()

    def _on_progress(self, event: hub.DownloadProgress) -> None:
        if self.downloading is None:
            return
        self.progress.setValue(int(1000 * event.done / max(event.total, 1)))
        self.progress.setFormat(f"{100 * event.done / max(event.total, 1):.0f} %")
        self.status.setText(f"{self.downloading}: {event.text()}")

    def _finish(self) -> None:
        self.downloading = None
        self.ticket = None
        self.refresh()

    def _on_done(self, repo_id: str) -> None:
        self._finish()
        self.status.setText(f"{repo_id} is in the cache: choose it above for "
                            f"{' and '.join(self._tasks_of(repo_id))}.")
        self.downloaded.emit(repo_id, self._tasks_of(repo_id))

    def _on_failed(self, repo_id: str, exc) -> None:
        self._finish()
        self.status.setText(f"Download of {repo_id} failed: {exc}")
        self.error.emit(str(exc))

    def _on_cancelled(self, repo_id: str) -> None:
        self._finish()
        self.status.setText(f"Download of {repo_id} stopped; Download resumes it where it stopped.")

    def _tasks_of(self, repo_id: str) -> tuple[str, ...]:
        return next((m.tasks for m in self.models if m.id == repo_id), ())

    # ---------------------------------------------------------------- remove

    def remove_selected(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        model = self.selected()
        if model is None or model.id not in self._cached:
            return
        size = self._cached[model.id].size / 1e6
        answer = QMessageBox.question(self, "Remove model", f"Delete {model.id} ({size:,.0f} MB) from the Hugging "
                                      f"Face cache? Other programs that use that cache lose it too.")
        if answer == QMessageBox.StandardButton.Yes:
            self.remove(model.id)

    def remove(self, repo_id: str):
        """Delete a cached model off the GUI thread (gigabytes on a slow disk); the ticket."""
        self.status.setText(f"Removing {repo_id}…")
        ticket = self.client.run(f"Removing {repo_id}…", hub.remove, repo_id)
        ticket.finished.connect(lambda freed: self._removed(repo_id, freed))
        # A file in use, no permission: said, not raised.
        ticket.failed.connect(lambda exc: self.status.setText(f"Could not remove {repo_id}: {exc}"))
        return ticket

    def _removed(self, repo_id: str, freed: int) -> None:
        self.status.setText(f"Removed {repo_id} ({freed / 1e6:,.0f} MB freed).")
        self.refresh()

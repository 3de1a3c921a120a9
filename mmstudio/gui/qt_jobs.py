"""Subprocess jobs (training, data generation) seen from the GUI: their events as a Qt signal."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from mmstudio.jobs import JobProcess, Launch


class JobRunner(QObject):
    """Starts jobs and relays each one's events (read on a thread) into the GUI thread."""

    event = Signal(str, dict)  # job key, event

    def start(self, key: str, launch: Launch) -> JobProcess:
        """Start a prepared job (it writes its config file first: StorageError where it cannot)."""
        return JobProcess(launch, lambda event: self.event.emit(key, event))

"""Subprocess jobs (training, data generation) seen from the GUI: their events as a Qt signal."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from mmstudio.jobs import JobProcess


class JobRunner(QObject):
    """Starts jobs and relays each one's events (read on a thread) into the GUI thread."""

    event = Signal(str, dict)  # job key, event

    def start(self, key: str, command) -> JobProcess:
        return JobProcess(command, lambda event: self.event.emit(key, event))

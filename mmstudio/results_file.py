"""A JSON-lines results file that a long batch run writes as it goes and a rerun resumes.

A run over a folder of 100,000 images can be killed at any moment (kill -9, a power cut). Each result is
one line, written as its batch finishes and synced to disk; a rerun with `resume` reads the lines that
are whole (a line cut by the kill, or one without its newline, is cut off the file) and skips their
inputs, so every input ends up in the file exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmstudio.errors import StorageError


class ResultsFile:
    def __init__(self, path: Path, *, resume: bool = False, key: str = "image"):
        self.path = Path(path)
        self.done: set[str] = set()  # the inputs already in the file
        self.failed_before = False  # whether one of them is an error line: the whole run then failed an input
        if self.path.exists() and self.path.stat().st_size and not resume:
            raise StorageError(self.path, "already holds results: add --resume to go on where it stopped, or "
                                          "give another --out")
        if resume and self.path.is_file():
            self.done = self._keep_whole_lines(key)
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise StorageError(self.path, f"cannot be written ({exc.strerror or exc})") from None

    def _keep_whole_lines(self, key: str) -> set[str]:
        data = self.path.read_bytes()
        whole = data[:data.rfind(b"\n") + 1]  # a last line without its newline was cut by the kill
        done, kept = set(), 0
        for line in whole.splitlines(keepends=True):
            try:
                record = json.loads(line)
            except ValueError:
                break  # a line cut short (its rest lost): it and what follows are done again
            if not isinstance(record, dict) or not isinstance(record.get(key), str):
                break
            done.add(record[key])
            self.failed_before = self.failed_before or "error" in record
            kept += len(line)
        if kept != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(kept)
        return done

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def sync(self) -> None:
        """What was written is on disk: a kill from now on loses none of it."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self.sync()
        self._file.close()

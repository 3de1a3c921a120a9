"""A JSON-lines results file that a long batch run writes as it goes and a rerun resumes.

A run over a folder of 100,000 images can be killed at any moment (kill -9, a power cut). Each result is
one line, written as its batch finishes and synced to disk; a rerun with `resume` reads the lines that
are whole (a line cut by the kill, or one without its newline, is cut off the file) and skips their
inputs, so every input ends up in the file exactly once.

An input is named by one field of its lines (`key`: the image, or the input file's line). Where one input
gives several lines (an image's answers to three questions), they are written one after another, so a kill
can cut only the last input's lines short: `grouped` files drop that input's lines on resume and do it again.

Under torchrun each process writes its own part beside the file (`merge` joins them in input order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Hashable, Iterable, Sequence

from mmstudio.errors import StorageError


def _key_value(record, key: str):
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def read_groups(data: bytes, key: str) -> tuple[list[tuple[Hashable, bytes]], int]:
    """([(input, its whole lines)], bytes that are whole lines) of a results file's content.

    Reading stops at the first line that is cut short or not a record of `key` (what a kill leaves)."""
    whole = data[:data.rfind(b"\n") + 1]  # a last line without its newline was cut by the kill
    groups: list[tuple[Hashable, bytes]] = []
    kept = 0
    for line in whole.splitlines(keepends=True):
        try:
            value = _key_value(json.loads(line), key)
        except ValueError:
            break  # a line cut short (its rest lost): it and what follows are done again
        if value is None:
            break
        if groups and groups[-1][0] == value:
            groups[-1] = (value, groups[-1][1] + line)
        else:
            groups.append((value, line))
        kept += len(line)
    return groups, kept


class ResultsFile:
    def __init__(self, path: Path, *, resume: bool = False, key: str = "image", grouped: bool = False):
        self.path = Path(path)
        self.key = key
        self.done: set = set()  # the inputs already in the file
        self.failed_before = False  # whether one of them is an error line: the whole run then failed an input
        if self.path.exists() and self.path.stat().st_size and not resume:
            raise StorageError(self.path, "already holds results: add --resume to go on where it stopped, or "
                                          "give another --out")
        if resume and self.path.is_file():
            self.done = self._keep_whole_inputs(grouped)
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise StorageError(self.path, f"cannot be written ({exc.strerror or exc})") from None

    def _keep_whole_inputs(self, grouped: bool) -> set:
        data = self.path.read_bytes()
        groups, kept = read_groups(data, self.key)
        if grouped and groups:
            kept -= len(groups.pop()[1])  # the kill may have cut its last lines: done again
        self.failed_before = any(_has_error(lines) for _, lines in groups)
        if kept != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(kept)
        return {value for value, _ in groups}

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def sync(self) -> None:
        """What was written is on disk: a kill from now on loses none of it."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self.sync()
        self._file.close()


def _has_error(lines: bytes) -> bool:
    """Whether an input's lines hold an error record (parsed only where the word is there at all)."""
    return b'"error"' in lines and any("error" in json.loads(line) for line in lines.splitlines())


def merge(path: Path, sources: Iterable[bytes], order: Sequence[Hashable], key: str) -> int:
    """Replace `path` with the inputs of `sources` (results files' contents), in `order`, each input once.

    An input found in two sources keeps the first one's lines; inputs not in `order` (their file has gone
    since) follow, in the order met. The file is replaced whole (a kill leaves the old one). Returns the
    number of inputs written."""
    position = {value: i for i, value in enumerate(order)}
    taken: dict[Hashable, tuple[int, int, bytes]] = {}
    for source in sources:
        for value, lines in read_groups(source, key)[0]:
            if value not in taken:
                taken[value] = (position.get(value, len(position)), len(taken), lines)
    tmp = path.with_name(f".{path.name}.merging")
    try:
        with tmp.open("wb") as handle:
            for _, _, lines in sorted(taken.values(), key=lambda entry: entry[:2]):
                handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(path, f"cannot be written ({exc.strerror or exc})") from None
    return len(taken)

"""Where a search index lives on disk: one SQLite database per model (WAL: several readers, one writer).

Two tables: `embeddings` (content key -> float32 vector) and `files` (absolute path -> size, modification
time and content key), and `meta` (format version, model, width). Each batch of new embeddings is one
transaction with the file records that point at them, so a kill at any moment leaves the last committed
batch: never vectors under another picture's name, never a file whose embedding is missing. (The JSON
and .npy pair this replaces could be left half-replaced by a crash between its two renames.)

What is read back is checked, not trusted: a file that is not a database, a malformed one, a vector of
the wrong width, NaN or not of unit length, a record of the wrong type are each dropped or the database
is set aside and rebuilt, with a note saying so. A cache folder that cannot be written still searches:
the index is kept in memory, and a note says why it cannot be saved.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mmstudio.vector_index import collection_digest

STORE_VERSION = 2
DATABASE = "index.sqlite"
OLD_FILES = ("index.json", "vectors.npy", ".lock")  # version 1's files: a cache, removed when replaced
BUSY_MS = 30_000  # another process's transaction: wait this long for it
SNAPSHOT_PREFIX = "vectors-"
# Fewer vectors than this are read from the database each time (0.3 s for 100,000 here): a snapshot for
# every small index would be one more file to go stale for nothing.
SNAPSHOT_FROM = 50_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
                                  key TEXT NOT NULL);
"""

FileRecord = tuple[int, int, str]  # (size, mtime_ns, content key)


class IndexStore:
    def __init__(self, directory: Path, model: str):
        self.directory = Path(directory)
        self.path = self.directory / DATABASE
        self.model = model
        self.notes: list[str] = []  # what was found wrong or could not be done, for the user
        self.dim = 0
        self.saved = True  # False once the index lives in memory only (nothing written beside it then)
        self._db: sqlite3.Connection | None = None
        self._open()

    # ------------------------------------------------------------------ open

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = self._connect(self.path)
            self._check_meta()
        except sqlite3.DatabaseError as exc:  # not a database, malformed, of another version
            self._set_aside(exc)
        except (OSError, sqlite3.OperationalError) as exc:
            self._in_memory(exc)

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last commits, never corrupt
        db.executescript(_SCHEMA)
        return db

    def _check_meta(self) -> None:
        meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        if not meta:
            with self._transaction() as db:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               [("version", str(STORE_VERSION)), ("model", self.model)])
            self._remove_old_files()
            return
        if meta.get("version") != str(STORE_VERSION):
            raise sqlite3.DatabaseError(f"format version {meta.get('version')!r}, not {STORE_VERSION}")
        dim = meta.get("dim", "0")
        self.dim = int(dim) if isinstance(dim, str) and dim.isdigit() else 0

    def _set_aside(self, exc: BaseException) -> None:
        self.close()
        aside = self.path.with_name(f"{DATABASE}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(str(self.path) + suffix)
                if source.exists():
                    os.replace(source, Path(str(aside) + suffix))
            self._db = self._connect(self.path)
            self._check_meta()
            self.notes.append(f"the search index at {self.path} was damaged ({exc}); it was set aside as "
                              f"{aside.name} and is rebuilt")
        except (OSError, sqlite3.Error) as again:
            self._in_memory(again)

    def _in_memory(self, exc: BaseException) -> None:
        self.close()
        self.saved = False
        self.notes.append(f"cannot save the search index in {self.directory} ({exc}); searching in memory, "
                          "so the next session encodes the pictures again")
        readable = None
        if self.path.is_file():
            try:
                readable = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
                readable.execute("SELECT count(*) FROM embeddings").fetchone()
            except sqlite3.Error:
                readable = None
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        if readable is not None:  # what is saved there still serves, read once into memory
            readable.backup(self._db)
            readable.close()

    def _remove_old_files(self) -> None:
        for name in OLD_FILES:
            try:
                (self.directory / name).unlink(missing_ok=True)
            except OSError:
                pass

    def _transaction(self):
        return _Transaction(self._db)

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    # ------------------------------------------------------------------ read

    def load(self) -> tuple[list[str], np.ndarray, dict[str, FileRecord]]:
        """(keys, vectors (N, dim) float32, files) as saved; bad rows are left out (and deleted), with a note.

        The vectors come memory-mapped from a snapshot beside the database when one matches the database's
        keys (a later session: nothing read until used); else read in blocks into one array (a million
        vectors never exist as a million small objects), checked, and a snapshot written for next time."""
        try:
            width = self.dim or _common_width(self._db)
            keys = [row[0] for row in self._db.execute("SELECT key FROM embeddings ORDER BY rowid")]
            snapshot = self._snapshot_path(keys, width)
            matrix = _mapped(snapshot, len(keys), width) if all(isinstance(k, str) for k in keys) else None
            bad_keys = []
            if matrix is None:
                keys, matrix = self._read_vectors(width, bad_keys)
                snapshot = self._snapshot_path(keys, width)
                self._write_snapshot(snapshot, matrix)
            file_rows = self._db.execute("SELECT path, size, mtime, key FROM files").fetchall()
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            return [], np.zeros((0, 0), np.float32), {}
        known = set(keys)
        files, bad_paths = {}, []
        for path, size, mtime, key in file_rows:
            if isinstance(path, str) and isinstance(size, int) and isinstance(mtime, int) and key in known:
                files[path] = (size, mtime, key)
            else:
                bad_paths.append(path)
        if bad_keys or bad_paths:
            self.notes.append(f"the search index at {self.path} had {len(bad_keys)} damaged embeddings and "
                              f"{len(bad_paths)} damaged file records; those pictures are encoded again")
            self._delete(bad_keys, bad_paths)
        self.dim = width if keys else self.dim
        return keys, matrix, files

    def _read_vectors(self, width: int, bad_keys: list) -> tuple[list[str], np.ndarray]:
        total = self._db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        matrix = np.empty((total, width), np.float32)
        keys: list[str] = []
        cursor = self._db.execute("SELECT key, vector FROM embeddings ORDER BY rowid")
        while batch := cursor.fetchmany(8192):
            good, vectors = _vectors(batch, width, bad_keys)
            if good:
                matrix[len(keys):len(keys) + len(good)] = vectors
            keys.extend(good)
        return keys, matrix[:len(keys)]

    def _snapshot_path(self, keys: list[str], width: int) -> Path | None:
        if not self.saved or not keys or not width or not all(isinstance(k, str) for k in keys):
            return None
        return self.directory / f"{SNAPSHOT_PREFIX}{collection_digest(keys, width)}.npy"

    def _write_snapshot(self, path: Path | None, matrix: np.ndarray) -> None:
        """Best effort, renamed into place whole; older snapshots removed (the database is what counts)."""
        if path is None or len(matrix) < SNAPSHOT_FROM:
            return
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
        try:
            np.save(partial, matrix)
            os.replace(partial, path)
            for old in self.directory.glob(f"{SNAPSHOT_PREFIX}*.npy"):
                if old != path:
                    old.unlink(missing_ok=True)
        except OSError:
            partial.unlink(missing_ok=True)

    # ----------------------------------------------------------------- write

    def add(self, keys: Sequence[str], vectors: np.ndarray | None, files: dict[str, FileRecord]) -> None:
        """New embeddings and the file records that point at them (or at older ones), in one transaction;
        `vectors` None with no keys: file records alone."""
        vectors = np.ascontiguousarray(vectors if vectors is not None else np.zeros((0, 1)), dtype=np.float32)
        try:
            with self._transaction() as db:
                if len(keys) and not self.dim:
                    self.dim = int(vectors.shape[1])
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(self.dim),))
                db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                               [(key, vectors[i].tobytes()) for i, key in enumerate(keys)])
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                               [(path, size, mtime, key) for path, (size, mtime, key) in files.items()])
        except sqlite3.Error as exc:  # a full disk, a folder made read-only meanwhile
            self._keep_in_memory(exc, keys, vectors, files)

    def prune(self, used: set[str]) -> tuple[list[str], list[str]]:
        """Forget files that are gone, then embeddings no file (and nothing in `used`) refers to; (paths, keys)
        forgotten."""
        gone, stale = [], []
        try:
            paths = [row[0] for row in self._db.execute("SELECT path FROM files")]
            gone = [p for p in paths if not os.path.exists(p)]
            with self._transaction() as db:
                db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
                live = {row[0] for row in db.execute("SELECT DISTINCT key FROM files")} | used
                stale = [row[0] for row in db.execute("SELECT key FROM embeddings") if row[0] not in live]
                db.executemany("DELETE FROM embeddings WHERE key = ?", [(k,) for k in stale])
        except sqlite3.Error as exc:
            self.notes.append(f"could not tidy the search index at {self.path} ({exc})")
            return [], []
        return gone, stale

    def _delete(self, keys: Iterable, paths: Iterable) -> None:
        try:
            with self._transaction() as db:
                db.executemany("DELETE FROM embeddings WHERE key IS ?", [(k,) for k in keys])
                db.executemany("DELETE FROM files WHERE path IS ?", [(p,) for p in paths])
        except sqlite3.Error:
            pass  # a read-only index: the bad rows are left out of memory all the same

    def _keep_in_memory(self, exc, keys, vectors, files) -> None:
        saved = self._db
        self._db = None
        self._in_memory(exc)
        try:
            if saved is not None:
                saved.backup(self._db)  # what this session had committed stays searchable
                saved.close()
        except sqlite3.Error:
            pass
        self.add(keys, vectors, files)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception, a KeyboardInterrupt included)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, traceback) -> bool:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False


def _common_width(db: sqlite3.Connection) -> int:
    """The width most vectors have (a few of another width are the damaged ones)."""
    rows = db.execute("SELECT length(vector), count(*) FROM embeddings WHERE typeof(vector) = 'blob' "
                      "GROUP BY 1 ORDER BY 2 DESC").fetchall()
    widths = [(size // 4, n) for size, n in rows if size and size % 4 == 0]
    return max(widths, key=lambda w: w[1])[0] if widths else 0


def _mapped(path: Path | None, count: int, width: int) -> np.ndarray | None:
    """A snapshot memory-mapped read-only, when it is there and has the shape the database says."""
    if path is None or not path.is_file():
        return None
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return matrix if matrix.shape == (count, width) and matrix.dtype == np.float32 else None


def _vectors(batch: list, width: int, bad_keys: list) -> tuple[list[str], np.ndarray]:
    """The keys and (n, width) vectors of the rows that hold what an embedder writes: a string key, `width`
    finite float32 values of unit length (give or take bf16's rounding); the other rows' keys to `bad_keys`."""
    shaped = []
    for key, blob in batch:
        if isinstance(key, str) and isinstance(blob, bytes) and width and len(blob) == 4 * width:
            shaped.append((key, blob))
        else:
            bad_keys.append(key)
    vectors = np.frombuffer(b"".join(blob for _, blob in shaped), np.float32).reshape(-1, max(width, 1))
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(vectors, axis=1)
    ok = np.isfinite(norms) & (np.abs(norms - 1.0) <= 0.02)
    bad_keys.extend(key for (key, _), good in zip(shaped, ok) if not good)
    return [key for (key, _), good in zip(shaped, ok) if good], vectors[ok]

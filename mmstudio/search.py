"""Search images by text: an embedding index of image files, kept under the user cache.

One index per model (`<cache>/mmstudio/index/<model id>/`) holds unit-length
image embeddings keyed by content hash (`imaging.content_key`), and for each
file seen its size, modification time and hash. Indexing a folder again reads
only files whose size or time changed, and encodes only pixels never seen
(a copied or renamed file is not encoded twice). A query is one text encoding
and one matrix-vector product over the collection; with a model that has an
image-text matching head (BLIP), its best RERANK images are then read again and
re-ranked by that head, as BLIP retrieves: one vector per image cannot say
"holds a small red circle" among other objects, the head reading every patch
can. Saving drops files that are gone and embeddings nothing refers to any
more, and merges what another process (a second window, the CLI) saved
meanwhile, under a lock file.

Pure numpy and Pillow; the model is any `Embedder` (BLIP retrieval, CLIP).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
from PIL import Image

from mmstudio.errors import MMStudioError
from mmstudio.imaging import content_key, iter_image_files, load_image
from mmstudio.models.base import CancelCheck, Embedder, ModelInfo, Reranker, never_cancelled
from mmstudio.models.common import one_torch_thread
from mmstudio.paths import cache_dir

INDEX_VERSION = 1
VECTORS_FILE = "vectors.npy"
INDEX_FILE = "index.json"
LOCK_FILE = ".lock"
# Images the matching head re-ranks per query. On 1,000 Shapes World scenes the built-in model's one-object
# queries reach mAP 0.23 by embeddings alone, 0.39 re-ranking 100, 0.51 at 200, 0.78 all of them
# (resources/models/README.md); every one is read again from its file, so the depth is what a query costs.
RERANK = 200

Source = tuple[str, Union[Path, Image.Image]]  # (name to report, a file or pixels already loaded)
Progress = Callable[[int, int], None]  # (done, total)


def index_root() -> Path:
    return cache_dir() / "index"


def model_id(info: ModelInfo) -> str:
    """A folder name for a model's index: its family, folder and weight files (retrained weights: a new index)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{info.family}\0{info.architecture}\0{Path(info.path).resolve()}".encode())
    try:
        for file in sorted(Path(info.path).iterdir()):
            if file.suffix in (".safetensors", ".bin"):
                st = file.stat()
                digest.update(f"\0{file.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    except OSError:
        pass
    return f"{info.family}-{digest.hexdigest()}"


@dataclass(frozen=True)
class Hit:
    image: str
    score: float  # cosine similarity of the image and the query
    rank: int  # 1 = best
    match: float | None = None  # the matching head's probability that the query describes the image, if re-ranked


@dataclass(frozen=True)
class IndexReport:
    images: int  # images in the collection
    encoded: int  # images run through the model in this update
    reused: int  # images whose embedding was already stored
    failed: tuple[tuple[str, str], ...] = ()  # (name, why) of files that could not be read


@dataclass(frozen=True, eq=False)
class Collection:
    """The images one search runs over, with their embeddings."""

    names: tuple[str, ...]
    vectors: np.ndarray  # (N, P) float32, unit length
    report: IndexReport
    items: tuple = ()  # per name, the file or pixels it came from (what re-ranking reads again)

    def rank(self, query: np.ndarray, top_k: int = 10) -> list[Hit]:
        """The top_k images for a (P,) unit query vector, best first."""
        scores = self.vectors @ np.asarray(query, dtype=np.float32)  # (N,)
        return [Hit(self.names[i], float(scores[i]), rank) for rank, i in enumerate(best(scores, top_k), start=1)]


def best(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, ties by position (stable results)."""
    count = len(scores)
    k = max(0, min(int(k), count))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < count else np.arange(count)
    return top[np.lexsort((top, -scores[top]))]


def rerank(scores: np.ndarray, match: Callable[[np.ndarray], np.ndarray], depth: int = RERANK) -> tuple:
    """(order of every item, matching probability per item or NaN): the `depth` best by `scores`, ordered by
    `match(their indices)` (ties by score), then the rest by score."""
    order = best(scores, len(scores))
    head = order[:depth]
    probability = np.full(len(scores), np.nan)
    if len(head):
        probability[head] = match(head)
        head = head[np.lexsort((np.arange(len(head)), -probability[head]))]
    return np.concatenate([head, order[depth:]]), probability


class EmbeddingIndex:
    """One model's image embeddings on disk, keyed by content hash, and the files they came from."""

    def __init__(self, embedder: Embedder, directory: Path | None = None):
        self.embedder = embedder
        self.directory = Path(directory) if directory else index_root() / model_id(embedder.info)
        self.keys: list[str] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.files: dict[str, tuple[int, int, str]] = {}  # absolute path -> (size, mtime_ns, content key)
        self._rows: dict[str, int] = {}
        self._chunks: list[np.ndarray] = []  # vectors added since the last join
        self._used: set[str] = set()  # keys collected by this process: kept even with no file behind them
        self._dirty = False
        self._seen = None  # (size, mtime) of the index file as last read or written by us
        if (self.directory / INDEX_FILE).is_file():
            try:
                with _locked(self.directory):
                    self._adopt_saved()
            except OSError:  # a read-only cache: read it without the lock
                self._adopt_saved()
            self._dirty = False

    def __len__(self) -> int:
        return len(self.keys)

    # ------------------------------------------------------------------ disk

    def _adopt_saved(self) -> None:
        self._seen = _stamp(self.directory)
        self._adopt(_read(self.directory))

    def _adopt(self, stored) -> None:
        """Take the keys, vectors and files of a stored index this one lacks (a newer file record wins)."""
        if stored is None:
            return
        keys, vectors, files = stored
        self._materialize()
        new = [row for row, key in enumerate(keys) if key not in self._rows]
        if new and self._dim() in (0, vectors.shape[1]):
            self._add([keys[row] for row in new], vectors[new])
            self._materialize()
        for path, record in files.items():
            if path not in self.files or record[1] > self.files[path][1]:
                self.files[path] = record

    def _prune(self) -> None:
        """Forget files that are gone, then embeddings that no file and no collection of ours refers to."""
        self.files = {path: v for path, v in self.files.items() if os.path.exists(path)}
        live = {v[2] for v in self.files.values()} | self._used
        rows = [row for row, key in enumerate(self.keys) if key in live]
        if len(rows) < len(self.keys):
            self.keys = [self.keys[row] for row in rows]
            self.vectors = self.vectors[rows]
            self._rows = {key: row for row, key in enumerate(self.keys)}

    def save(self) -> None:
        """Write the index if it changed; each file is replaced whole, so a crash leaves the old one."""
        if not self._dirty:
            return
        self._materialize()
        self.directory.mkdir(parents=True, exist_ok=True)
        with _locked(self.directory):
            if _stamp(self.directory) != self._seen:  # another process saved since we read or wrote it
                self._adopt_saved()
            self._prune()
            self._write()
        self._dirty = False

    def _write(self) -> None:
        tmp_vectors = self.directory / f".{VECTORS_FILE}.{os.getpid()}.tmp"
        with open(tmp_vectors, "wb") as fp:
            np.save(fp, self.vectors, allow_pickle=False)
        meta = {"version": INDEX_VERSION, "model": self.embedder.info.name, "dim": int(self.vectors.shape[1]),
                "keys": self.keys, "files": {path: list(v) for path, v in self.files.items()}}
        tmp_meta = self.directory / f".{INDEX_FILE}.{os.getpid()}.tmp"
        tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp_vectors, self.directory / VECTORS_FILE)
        os.replace(tmp_meta, self.directory / INDEX_FILE)
        self._seen = _stamp(self.directory)

    # ---------------------------------------------------------------- update

    def collect(
        self,
        sources: Sequence[Source],
        *,
        batch_size: int = 32,
        cancel: CancelCheck = never_cancelled,
        progress: Progress | None = None,
    ) -> Collection:
        """Embeddings of the sources, encoding only pixels the index has not seen."""
        names: list[str] = []
        items: list = []
        keys: list[str] = []
        failed: list[tuple[str, str]] = []
        waiting: dict[str, Image.Image] = {}  # content key -> pixels to encode
        encoded = 0
        total = len(sources)

        def flush() -> None:
            nonlocal encoded
            if waiting:
                cancel()
                self._add(list(waiting), self.embedder.image_features(list(waiting.values())))
                encoded += len(waiting)
                waiting.clear()

        for done, (name, item) in enumerate(sources, start=1):
            try:
                key, image = self._key_of(item)
            except MMStudioError as exc:
                failed.append((name, str(exc)))
                continue
            names.append(name)
            items.append(item)
            keys.append(key)
            self._used.add(key)
            if key not in self._rows and key not in waiting:
                waiting[key] = image  # a key the index lacks was just read from its file
                if len(waiting) >= max(1, batch_size):
                    flush()
            if progress and (done % 256 == 0 or done == total):
                progress(done, total)
        flush()
        self._materialize()
        vectors = self.vectors[[self._rows[k] for k in keys]] if keys else np.zeros((0, self._dim()), np.float32)
        report = IndexReport(images=len(keys), encoded=encoded, reused=len(keys) - encoded, failed=tuple(failed))
        return Collection(tuple(names), np.ascontiguousarray(vectors, dtype=np.float32), report, tuple(items))

    def collect_folder(self, folder: Path, **options) -> Collection:
        if not Path(folder).is_dir():
            raise MMStudioError(f"{folder}: not a folder of images")
        return self.collect([(str(path), path) for path in iter_image_files([folder])], **options)

    def search(self, collection: Collection, query: str, top_k: int = 10, *, depth: int = RERANK,
               cancel: CancelCheck = never_cancelled) -> list[Hit]:
        """The top_k images for the query: by embedding, then (a model with a matching head, depth > 0) the
        best `depth` re-ranked by that head. An image that can no longer be read keeps its embedding's place
        below the re-ranked ones."""
        with one_torch_thread():
            vector = self.embedder.text_features([query])[0]
        if not isinstance(self.embedder, Reranker) or depth <= 0 or len(collection.items) != len(collection.names):
            return collection.rank(vector, top_k)
        scores = collection.vectors @ np.asarray(vector, dtype=np.float32)

        def match(indices: np.ndarray) -> np.ndarray:
            # Read 64 at a time, so a depth of big photos is never all in memory at once; the head's batches
            # are worth every thread, unlike the query's one text.
            out = np.full(len(indices), -1.0)  # unreadable now: after every image read
            readable, images = [], []
            for slot, i in enumerate(indices):
                cancel()
                item = collection.items[i]
                try:
                    images.append(item if isinstance(item, Image.Image) else load_image(item))
                    readable.append(slot)
                except MMStudioError:
                    continue
                if len(images) == 64:
                    out[readable] = self.embedder.match_scores(images, query)
                    readable, images = [], []
            if images:
                out[readable] = self.embedder.match_scores(images, query)
            return out

        order, probability = rerank(scores, match, depth)
        return [Hit(collection.names[i], float(scores[i]), rank,
                    None if np.isnan(probability[i]) or probability[i] < 0 else float(probability[i]))
                for rank, i in enumerate(order[:max(0, int(top_k))], start=1)]

    def _key_of(self, item) -> tuple[str, Image.Image | None]:
        """(content key, the image if it had to be read). A file unchanged since it was indexed is not read."""
        if isinstance(item, Image.Image):
            return content_key(item), item
        path = os.path.abspath(os.fspath(item))
        try:
            st = os.stat(path)
        except OSError:
            image = load_image(path)  # says why, as an ImageLoadError
            return content_key(image), image
        known = self.files.get(path)
        if known is not None and known[:2] == (st.st_size, st.st_mtime_ns) and known[2] in self._rows:
            return known[2], None
        image = load_image(path)
        key = content_key(image)
        self.files[path] = (st.st_size, st.st_mtime_ns, key)
        self._dirty = True
        return key, image

    def _add(self, keys: list[str], vectors: np.ndarray) -> None:
        self._chunks.append(np.asarray(vectors, dtype=np.float32))  # joined once, not per batch
        for key in keys:
            self._rows[key] = len(self.keys)
            self.keys.append(key)
        self._dirty = True

    def _materialize(self) -> None:
        if self._chunks:
            parts = ([self.vectors] if len(self.vectors) else []) + self._chunks
            self.vectors = np.concatenate(parts)
            self._chunks = []

    def _dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.size else 0


def _stamp(directory: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(directory / INDEX_FILE)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read(directory: Path):
    """(keys, vectors, files) of the index saved in `directory`, or None if there is none or it is damaged."""
    try:
        meta = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        vectors = np.load(directory / VECTORS_FILE, allow_pickle=False)
    except (OSError, ValueError):
        return None  # no index yet, or a damaged one: it is rebuilt
    if not isinstance(meta, dict):
        return None
    keys = meta.get("keys")
    if meta.get("version") != INDEX_VERSION or not isinstance(keys, list) or vectors.ndim != 2 \
            or len(keys) != len(vectors):
        return None
    files = meta.get("files") or {}
    files = {path: (int(v[0]), int(v[1]), str(v[2])) for path, v in files.items()
             if isinstance(v, list) and len(v) == 3}
    return [str(k) for k in keys], vectors.astype(np.float32, copy=False), files


@contextmanager
def _locked(directory: Path):
    """Hold the index's lock file: its two files are read and replaced as a pair, one process at a time."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+b") as fp:
        if os.name == "nt":
            import msvcrt

            fp.seek(0)
            msvcrt.locking(fp.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises OSError
            try:
                yield
            finally:
                fp.seek(0)
                msvcrt.locking(fp.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fp.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fp.fileno(), fcntl.LOCK_UN)

"""Search images by text: an embedding index of image files, kept under the user cache.

One index per model (`<cache>/mmstudio/index/<model id>/`) holds unit-length
image embeddings keyed by content hash (`imaging.content_key`), and for each
file seen its size, modification time and hash. Indexing a folder again reads
only files whose size or time changed, and encodes only pixels never seen
(a copied or renamed file is not encoded twice). A query is one text encoding
and its nearest images (`vector_index`: exact up to 100,000 images, a graph
index kept beside the database above); with a model that has an
image-text matching head (BLIP), its best RERANK images are then read again and
re-ranked by that head, as BLIP retrieves: one vector per image cannot say
"holds a small red circle" among other objects, the head reading every patch
can. The index is an SQLite database (`mmstudio/index_store.py`): each batch of
new embeddings is saved as it is encoded, with its file records, in one
transaction, so indexing can be killed at any moment and goes on where it
stopped; several processes (a second window, the CLI) share it. Saving drops
files that are gone and embeddings nothing refers to any more.

Pure numpy and Pillow; the model is any `Embedder` (BLIP retrieval, CLIP).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
from PIL import Image

from mmstudio.errors import MMStudioError
from mmstudio.imaging import content_key, iter_image_files, load_image
from mmstudio.index_store import IndexStore
from mmstudio.models.base import CancelCheck, Embedder, ModelInfo, Reranker, never_cancelled
from mmstudio.models.common import one_torch_thread
from mmstudio.paths import cache_dir
from mmstudio.vector_index import NearestIndex, best

# Images the matching head re-ranks per query (BLIP re-ranks 256 on COCO's 5,000 test images). On 1,000
# Shapes World scenes the built-in model's one-object queries reach mAP 0.53 by embeddings alone, 0.89
# re-ranking 200, 0.93 at 300, 0.94 all of them (held-out renderer: 0.87, 0.91, 0.92;
# resources/models/README.md); every one is read again from its file, so the depth is what a query costs.
RERANK = 300

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
    in_domain: float | None = None  # where re-ranked by a model with an in-domain check (models/in_domain.py)


@dataclass(frozen=True)
class IndexReport:
    images: int  # images in the collection
    encoded: int  # images run through the model in this update
    reused: int  # images whose embedding was already stored
    failed: tuple[tuple[str, str], ...] = ()  # (name, why) of files that could not be read
    notes: tuple[str, ...] = ()  # what was wrong with the saved index, or why it cannot be saved


@dataclass(frozen=True, eq=False)
class Collection:
    """The images one search runs over, with their embeddings."""

    names: tuple[str, ...]
    vectors: np.ndarray  # (N, P) float32, unit length
    report: IndexReport
    items: tuple = ()  # per name, the file or pixels it came from (what re-ranking reads again)
    keys: tuple[str, ...] = ()  # per name, its content key: names the saved nearest-neighbour graph
    cache: Path | None = None  # where that graph is kept (the index's folder); None: not kept

    def nearest(self, cancel: CancelCheck = never_cancelled) -> NearestIndex:
        """Exact for a small collection; above `vector_index.EXACT_UP_TO`, a graph built once (and kept on
        disk and here): `cancel` may stop that build."""
        found = self.__dict__.get("_nearest")
        if found is None:
            found = NearestIndex(self.vectors, keys=self.keys, cache=self.cache, cancel=cancel)
            object.__setattr__(self, "_nearest", found)  # frozen: a cache, not a field
        return found

    def rank(self, query: np.ndarray, top_k: int = 10, cancel: CancelCheck = never_cancelled) -> list[Hit]:
        """The top_k images for a (P,) unit query vector, best first."""
        rows, scores = self.nearest(cancel).search(query, top_k)
        return [Hit(self.names[i], float(s), rank) for rank, (i, s) in enumerate(zip(rows, scores), start=1)]


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
        self.store = IndexStore(self.directory, embedder.info.name)
        self.keys, self.vectors, self.files = self.store.load()  # files: path -> (size, mtime_ns, content key)
        self._rows: dict[str, int] = {key: row for row, key in enumerate(self.keys)}
        self._chunks: list[np.ndarray] = []  # vectors added since the last join
        self._used: set[str] = set()  # keys collected by this process: kept even with no file behind them
        self._pending: dict[str, tuple[int, int, str]] = {}  # file records to save with the next batch
        self._changed = False  # anything encoded or read anew since the last save: then save tidies up

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self.store.notes)

    # ------------------------------------------------------------------ disk

    def save(self) -> None:
        """Save file records not saved with a batch, then forget files that are gone and embeddings nothing
        refers to (what other processes saved is kept: they share the database). Nothing to do when nothing
        changed: a search over an unchanged collection does not stat its files twice."""
        if not self._changed and not self._pending:
            return
        self.store.add([], None, self._pending)
        self._pending = {}
        gone, stale = self.store.prune(self._used)
        self._forget(gone, stale)
        self._changed = False

    def _forget(self, paths: list[str], keys: list[str]) -> None:
        """What the database forgot, forgotten here too: a file of those pixels seen later is encoded again
        rather than recorded against an embedding the database no longer has."""
        for path in paths:
            self.files.pop(path, None)
        stale = set(keys) & self._rows.keys()
        if stale:
            self._materialize()
            rows = [row for row, key in enumerate(self.keys) if key not in stale]
            self.keys = [self.keys[row] for row in rows]
            self.vectors = self.vectors[rows]
            self._rows = {key: row for row, key in enumerate(self.keys)}

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
                keys, vectors = list(waiting), self.embedder.image_features(list(waiting.values()))
                self._add(keys, vectors)
                # The batch and the file records seen with it: one transaction, whatever kills us next.
                self.store.add(keys, vectors, self._pending)
                self._pending = {}
                self._changed = True
                encoded += len(waiting)
                waiting.clear()

        for done, (name, item) in enumerate(sources, start=1):
            flushed = False
            try:
                key, image = self._key_of(item)
            except MMStudioError as exc:
                failed.append((name, str(exc)))
            else:
                names.append(name)
                items.append(item)
                keys.append(key)
                self._used.add(key)
                if key not in self._rows and key not in waiting:
                    waiting[key] = image  # a key the index lacks was just read from its file
                    if len(waiting) >= max(1, batch_size):
                        flush()
                        flushed = True
            # After each batch encoded (seconds with a large model), and every 256 files only read.
            if progress and done < total and (flushed or done % 256 == 0):
                progress(done, total)
        flush()
        if progress and total:
            progress(total, total)
        self._materialize()
        vectors = self.vectors[[self._rows[k] for k in keys]] if keys else np.zeros((0, self._dim()), np.float32)
        report = IndexReport(images=len(keys), encoded=encoded, reused=len(keys) - encoded, failed=tuple(failed),
                             notes=self.notes)
        return Collection(tuple(names), np.ascontiguousarray(vectors, dtype=np.float32), report, tuple(items),
                          tuple(keys), self.directory)

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
            return collection.rank(vector, top_k, cancel)
        # The candidates: all a page of results and the re-ranking need, nearest first (the whole collection
        # is never scored twice, and past EXACT_UP_TO images only these are found, by the graph).
        rows, scores = collection.nearest(cancel).search(vector, max(int(top_k), depth))

        def match(local: np.ndarray) -> np.ndarray:
            indices = rows[local]
            # Read 64 at a time, so a depth of big photos is never all in memory at once; the head's batches
            # are worth every thread, unlike the query's one text.
            out = np.full(len(indices), -1.0)  # unreadable now: after every image read
            readable, images = [], []

            def score() -> None:
                out[readable], found = self.embedder.match_and_domain(images, query)
                domain.update((int(local[slot]), value) for slot, value in zip(readable, found))

            for slot, i in enumerate(indices):
                cancel()
                item = collection.items[i]
                try:
                    images.append(item if isinstance(item, Image.Image) else load_image(item))
                    readable.append(slot)
                except MMStudioError:
                    continue
                if len(images) == 64:
                    score()
                    readable, images = [], []
            if images:
                score()
            return out

        domain: dict[int, float | None] = {}  # candidate -> in_domain, for those re-ranked
        order, probability = rerank(scores, match, depth)
        return [Hit(collection.names[rows[i]], float(scores[i]), rank,
                    None if np.isnan(probability[i]) or probability[i] < 0 else float(probability[i]),
                    domain.get(int(i)))
                for rank, i in enumerate(order[:max(0, int(top_k))], start=1)]

    def search_like(self, collection: Collection, image: Image.Image, top_k: int = 10) -> list[Hit]:
        """The top_k images that look most like `image`: by embedding alone (a matching head reads a text)."""
        return collection.rank(self.embedder.image_features([image])[0], top_k)

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
        self.files[path] = self._pending[path] = (st.st_size, st.st_mtime_ns, key)
        return key, image

    def _add(self, keys: list[str], vectors: np.ndarray) -> None:
        self._chunks.append(np.asarray(vectors, dtype=np.float32))  # joined once, not per batch
        for key in keys:
            self._rows[key] = len(self.keys)
            self.keys.append(key)

    def _materialize(self) -> None:
        if self._chunks:
            parts = ([self.vectors] if len(self.vectors) else []) + self._chunks
            self.vectors = np.concatenate(parts)
            self._chunks = []

    def _dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.size else 0

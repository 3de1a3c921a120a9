"""Nearest vectors by inner product: exact up to a size, a graph index (HNSW, usearch) above it.

Why usearch: two wheels (13 MB with its SIMD kernels, no BLAS, no compiler), maintained, HNSW with half-precision
vectors (half the memory of float32), an index saved as one file and opened memory-mapped (`view`), so a
collection searched again does not rebuild or read it whole. FAISS (an 18.8 MB wheel, OpenBLAS inside)
is the reference for GPU and billion-scale quantized search, which a desktop collection does not need;
hnswlib ships no wheels (a user would need a C++ compiler) and has not been released since 2023.

Below EXACT_UP_TO vectors a query is one matrix-vector product: no build, and every answer exact. Above
it the graph is built once per collection (its keys' digest names the file, beside the index database),
then answers in about a millisecond; `bench/index_scale.py` measures the threshold, build time, memory,
latency and recall@10 against exact search. Ties (exact) are broken by position, as `search.best` does.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

# bench/index_scale.py (2 cores, 128-d): exact search of 100,000 vectors takes about 6 ms a query, of
# 1,000,000 about 70: above 100,000 the graph pays for its build.
EXACT_UP_TO = 100_000
CONNECTIVITY = 16  # graph edges per node (usearch's default)
EXPANSION_ADD = 128  # candidates weighed when a node is inserted: a better graph, a slower build
EXPANSION_SEARCH = 512  # candidates weighed per query: recall@10 >= 0.95 at 1M clustered vectors
BUILD_BLOCK = 20_000  # vectors added between two looks at cancel (a few seconds of building here)
KEEP_GRAPHS = 3  # graphs of other collections kept beside an index (a user searches a few folders)
GRAPH_PREFIX = "nearest-"


class NearestIndex:
    """Top-k of unit vectors by inner product with a query."""

    def __init__(self, vectors: np.ndarray, *, keys: Sequence[str] = (), cache: Path | None = None,
                 exact_up_to: int | None = None, cancel: Callable[[], None] = lambda: None,
                 progress: Callable[[int, int], None] | None = None):
        """`cancel()` is called between blocks of a graph build (minutes at a million vectors) and may raise;
        `progress(done, total)` after each."""
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.count, self.dim = (self.vectors.shape if self.vectors.ndim == 2 else (0, 0))
        limit = EXACT_UP_TO if exact_up_to is None else exact_up_to
        self.graph = None
        self.built_seconds = 0.0  # time spent building the graph in this process (0: exact, or read back)
        self.note = ""  # why a saved graph was not used, or the graph library is missing
        if self.count > limit:
            self.graph = self._graph(keys, cache, cancel, progress)

    @property
    def approximate(self) -> bool:
        return self.graph is not None

    def search(self, query: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, inner products) of the `count` nearest vectors, best first."""
        count = max(0, min(int(count), self.count))
        if count == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if self.graph is None:
            scores = self.vectors @ query
            rows = best(scores, count)
            return rows, scores[rows]
        self.graph.expansion_search = max(EXPANSION_SEARCH, 2 * count)
        found = self.graph.search(query, count)
        rows = np.asarray(found.keys, dtype=np.int64)
        scores = (1.0 - np.asarray(found.distances, dtype=np.float32)).astype(np.float32)
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    # ---------------------------------------------------------------- graph

    def _graph(self, keys: Sequence[str], cache: Path | None, cancel, progress):
        try:
            from usearch.index import Index
        except ImportError:  # a build without the library: exact search, slower on a large collection
            self.note = "usearch is not installed: searching exactly"
            return None
        path = None
        if cache is not None and len(keys) == self.count:
            path = Path(cache) / f"{GRAPH_PREFIX}{collection_digest(keys, self.dim)}.usearch"
            graph = _open_saved(Index, path, self.count, self.dim)
            if graph is not None:
                _touch(path)
                return graph
            if path.exists():
                self.note = f"the saved nearest-neighbour graph {path.name} was unreadable; it was rebuilt"
        started = time.perf_counter()
        graph = Index(ndim=self.dim, metric="ip", dtype="f16", connectivity=CONNECTIVITY,
                      expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
        for start in range(0, self.count, BUILD_BLOCK):
            cancel()
            end = min(start + BUILD_BLOCK, self.count)
            graph.add(np.arange(start, end, dtype=np.int64), self.vectors[start:end], threads=os.cpu_count() or 1)
            if progress:
                progress(end, self.count)
        self.built_seconds = time.perf_counter() - started
        if path is not None:
            _save(graph, path)
        return graph


def best(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, ties by position (stable results)."""
    count = len(scores)
    k = max(0, min(int(k), count))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < count else np.arange(count)
    return top[np.lexsort((top, -scores[top]))]


def collection_digest(keys: Sequence[str], dim: int) -> str:
    """A name for a collection's derived files (graph, map layout): its pictures' content keys, in order."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{len(keys)}\0{dim}\0".encode())
    digest.update("\n".join(keys).encode())
    return digest.hexdigest()


def _open_saved(index_class, path: Path, count: int, dim: int):
    """A saved graph memory-mapped, or None when there is none or it does not hold what it should."""
    if not path.is_file():
        return None
    try:
        graph = index_class.restore(str(path), view=True)
    except Exception:  # noqa: BLE001 - truncated or foreign file: the graph is rebuilt
        return None
    if graph is None or len(graph) != count or graph.ndim != dim:
        return None
    return graph


def _save(graph, path: Path) -> None:
    """Written to a temporary name, then renamed: a reader never maps half a file. Best effort: a folder
    that cannot be written only means the next session builds the graph again."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        graph.save(str(partial))
        os.replace(partial, path)
        _forget_old(path.parent, keep=path)
    except OSError:
        partial.unlink(missing_ok=True)


def _forget_old(folder: Path, keep: Path) -> None:
    graphs = sorted(folder.glob(f"{GRAPH_PREFIX}*.usearch"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [g for g in graphs if g != keep][KEEP_GRAPHS - 1:]:
        old.unlink(missing_ok=True)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass

"""The search index at 10k, 100k and 1M images: build, memory, query latency and recall, side by side.

    python bench/index_scale.py [--sizes 10000,100000,1000000] [--dim 128] [--kind clustered|uniform]
    python bench/index_scale.py --real 2000     # real pictures: indexing throughput, images/s

Synthetic unit vectors of the retrieval model's width (the built-in model's 128; BLIP base's is 256),
each size in its own process so that its peak memory is its own. A model's embeddings of a collection
are not spread evenly over the sphere: pictures come in groups (a subject, a session, a scene type), so
`clustered` draws vectors around centres (a group of about 50 pictures each, a cosine of about 0.8
within a group) and queries as unseen members of those groups. `uniform` (no structure at all: every
vector nearly orthogonal to every other) is the worst case for any graph index, printed for reference.

For each size, everything the app does with a collection that large, in order:
  write     the vectors into the index database (mmstudio/index_store.py), in batches as indexing does
  load      the database read back, checked, and a snapshot of the vectors written beside it
  mapped    a later session's load: the keys from the database, the vectors memory-mapped from the snapshot
  graph     the HNSW graph built (mmstudio/vector_index.py), saved beside the database
  reopen    the saved graph opened again, memory-mapped (a later session)
  exact     p50 / p95 of one query by a matrix-vector product over every vector
  graph q   p50 / p95 of one query through the graph; recall@10 against the exact top 10
  map       the PCA layout of every vector (mmstudio/embedding_map.py)
  peak RSS  the process's peak resident memory over all of the above

Goals at 1M on the 2-core machine: a query <= 20 ms p95 with recall@10 >= 0.95, index + map within 2 GB.
Results in docs/benchmarks.md, with the command that gave them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUERIES = 200
GROUP = 50  # pictures per group, on average (clustered)
SPREAD = 0.5  # noise per coordinate, against centres of unit variance per coordinate: cosine ~0.8 in a group


def vectors(kind: str, count: int, dim: int, seed: int, centres: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        out = rng.standard_normal((count, dim), dtype=np.float32)
    else:
        out = centres[rng.integers(0, len(centres), count)] + SPREAD * rng.standard_normal((count, dim),
                                                                                             dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 95) * 1e3)


def one_size(kind: str, count: int, dim: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from mmstudio.embedding_map import pca_layout
    from mmstudio.index_store import IndexStore
    from mmstudio.vector_index import NearestIndex

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((max(count // GROUP, 1), dim)).astype(np.float32)
    result = {"kind": kind, "count": count, "dim": dim}
    with tempfile.TemporaryDirectory(prefix="index-scale-") as folder:
        started = time.perf_counter()
        store = IndexStore(Path(folder), "synthetic")
        for start in range(0, count, 10_000):  # what `mmstudio index` saves, one batch at a time
            block = vectors(kind, min(10_000, count - start), dim, 1 + start, centres)
            store.add([f"{i:040x}" for i in range(start, start + len(block))], block, {})
        store.close()
        result["write_s"] = time.perf_counter() - started

        started = time.perf_counter()
        store = IndexStore(Path(folder), "synthetic")
        keys, matrix, _ = store.load()
        store.close()
        result["load_s"] = time.perf_counter() - started
        assert len(keys) == count
        del matrix
        started = time.perf_counter()
        store = IndexStore(Path(folder), "synthetic")
        keys, matrix, _ = store.load()
        store.close()
        result["mapped_s"] = time.perf_counter() - started
        assert isinstance(matrix, np.memmap) or count < 50_000, "a large index maps its snapshot"

        exact = NearestIndex(matrix, exact_up_to=count)
        graph = NearestIndex(matrix, keys=keys, cache=Path(folder), exact_up_to=0)
        result["graph_s"] = graph.built_seconds
        started = time.perf_counter()
        reopened = NearestIndex(matrix, keys=keys, cache=Path(folder), exact_up_to=0)
        result["reopen_s"] = time.perf_counter() - started
        assert reopened.built_seconds == 0, reopened.note

        queries = vectors(kind, QUERIES, dim, 10**9, centres)
        exact_times, graph_times, found = [], [], 0
        for query in queries:
            started = time.perf_counter()
            truth, _ = exact.search(query, 10)
            exact_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows, _ = reopened.search(query, 10)
            graph_times.append(time.perf_counter() - started)
            found += len(set(rows.tolist()) & set(truth.tolist()))
        result["exact_p50_ms"], result["exact_p95_ms"] = percentiles(exact_times)
        result["graph_p50_ms"], result["graph_p95_ms"] = percentiles(graph_times)
        result["recall10"] = found / (10 * QUERIES)

        started = time.perf_counter()
        pca_layout(matrix)
        result["map_s"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def real_images(count: int) -> None:
    """`mmstudio index` end to end on generated scenes with the built-in retrieval model, all cores."""
    sys.path.insert(0, str(ROOT))
    import os

    import torch

    from mmstudio.engine import Engine
    from mmstudio.imaging import iter_image_files
    from mmstudio.world import generate_dataset

    with tempfile.TemporaryDirectory(prefix="index-real-") as folder:
        os.environ["XDG_CACHE_HOME"] = str(Path(folder) / "cache")
        generate_dataset(Path(folder) / "scenes", count, seed=77)
        files = iter_image_files([Path(folder) / "scenes" / "images"])
        engine = Engine()
        engine.embedder()  # loaded before the clock starts
        started = time.perf_counter()
        collection = engine.index([(str(f), f) for f in files])
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = engine.index([(str(f), f) for f in files])
        second = time.perf_counter() - started
    print(f"built-in retrieval model, {count:,} generated scenes, {torch.get_num_threads()} threads: "
          f"{collection.report.encoded:,} encoded in {first:.1f} s = {count / first:.0f} images/s "
          f"(reading, hashing, encoding, saving); again with nothing new: {again.report.encoded} encoded, "
          f"{second:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--kind", choices=("clustered", "uniform"), default="clustered")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size, a JSON line
    parser.add_argument("--real", type=int, metavar="N",
                        help="instead: index N generated scenes with the built-in retrieval model (images/s)")
    args = parser.parse_args()
    if args.real:
        real_images(args.real)
        return
    if args.one:
        print(json.dumps(one_size(args.kind, args.one, args.dim)))
        return
    print(f"{args.kind} unit vectors, {args.dim}-d, {QUERIES} queries; each size in its own process")
    print(f"{'images':>9} {'write':>7} {'load':>6} {'mapped':>6} {'graph':>7} {'reopen':>6} {'exact p50/p95':>14} "
          f"{'graph p50/p95':>14} {'ratio':>6} {'recall@10':>9} {'map':>6} {'peak RSS':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--dim", str(args.dim),
                              "--kind", args.kind], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['count']:>9,} {r['write_s']:>6.1f}s {r['load_s']:>5.1f}s {r['mapped_s']:>5.1f}s "
              f"{r['graph_s']:>6.1f}s "
              f"{r['reopen_s']:>5.2f}s {r['exact_p50_ms']:>6.2f}/{r['exact_p95_ms']:<6.2f}ms "
              f"{r['graph_p50_ms']:>6.2f}/{r['graph_p95_ms']:<6.2f}ms {r['exact_p50_ms'] / r['graph_p50_ms']:>5.1f}x "
              f"{r['recall10']:>9.3f} {r['map_s']:>5.1f}s {r['peak_rss_mb']:>7,.0f}MB", flush=True)


if __name__ == "__main__":
    main()

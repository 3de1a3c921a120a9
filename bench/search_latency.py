"""Search latency over a 10,000-image index on this machine.

    python bench/search_latency.py [--images 10000] [--queries 200] [--model M]

Writes N small distinct images to a temporary folder, indexes them with a tiny
CLIP built on the spot (tests/family_checkpoints.py) with 512-d embeddings like
CLIP ViT-B/32's: building is quick, and a query is a text encoding plus a
product with the N x 512 matrix, whatever made the image embeddings. Checks
that indexing the folder again encodes nothing, then times queries. `--model`
uses another matching model (BLIP retrieval, a real CLIP): indexing takes longer;
with a matching head (BLIP), queries re-ranked by it are timed too, alternating
with embedding-only ones (`--rerank N`).

Prints the median, 95th percentile and worst query time; the target is <= 50 ms.
The index lives in a temporary XDG_CACHE_HOME, so the user cache is untouched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("red", "green", "blue", "yellow", "small", "large", "circle", "square", "star", "triangle", "two", "left")


def write_images(folder: Path, count: int, rng: np.random.Generator) -> None:
    from PIL import Image

    for i in range(count):
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(sub / f"img{i:05d}.png")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from mmstudio.search import RERANK

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--model", default=None, help="a matching model (default: a tiny CLIP built here)")
    parser.add_argument("--rerank", type=int, default=RERANK,
                        help="with a model that has a matching head (BLIP retrieval), also time queries whose "
                             "best N are re-ranked by it, side by side with embedding-only ones (default: RERANK)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mmstudio-search-bench-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmstudio.engine import Engine
    from mmstudio.models.base import Reranker
    from mmstudio.search import EmbeddingIndex

    model = args.model
    if model is None:
        from tests.family_checkpoints import build_clip

        # Embeddings as wide as CLIP ViT-B/32's, so ranking costs what it costs with the real model.
        model = str(build_clip(work / "tiny-clip", projection_dim=512))
    rng = np.random.default_rng(0)
    folder = work / "images"
    start = time.perf_counter()
    write_images(folder, args.images, rng)
    print(f"wrote {args.images} images in {time.perf_counter() - start:.1f} s")

    engine = Engine()
    embedder = engine.embedder(model)

    class Counting:
        info = embedder.info
        encoded = 0

        def image_features(self, images):
            Counting.encoded += len(images)
            return embedder.image_features(images)

        def text_features(self, texts):
            return embedder.text_features(texts)

    index = EmbeddingIndex(Counting())
    start = time.perf_counter()
    collection = index.collect_folder(folder, batch_size=256)
    index.save()
    print(f"built the index: {collection.report.images} images, {Counting.encoded} encoded, "
          f"{time.perf_counter() - start:.1f} s")

    Counting.encoded = 0
    start = time.perf_counter()
    reopened = EmbeddingIndex(Counting())
    collection = reopened.collect_folder(folder)
    reindex = time.perf_counter() - start
    print(f"re-indexed the unchanged folder: {Counting.encoded} encoded, {reindex * 1000:.0f} ms "
          "(reading the index, listing and stat-ing every file)")
    assert Counting.encoded == 0

    queries = [" ".join(rng.choice(WORDS, size=3)) for _ in range(args.queries)]
    reopened.search(collection, queries[0], args.top)  # warm-up
    times = []
    for query in queries:
        start = time.perf_counter()
        hits = reopened.search(collection, query, args.top)
        times.append(time.perf_counter() - start)
        assert len(hits) == min(args.top, collection.report.images)
    times_ms = sorted(t * 1000 for t in times)
    p95 = times_ms[int(0.95 * (len(times_ms) - 1))]
    median = statistics.median(times_ms)
    print(f"query over {collection.report.images} images (text encoding + ranking, top {args.top}): "
          f"median {median:.2f} ms, p95 {p95:.2f} ms, worst {times_ms[-1]:.2f} ms "
          f"-> {'OK' if p95 <= 50 else 'OVER'} the 50 ms target")
    print(f"model: {embedder.info.name} ({embedder.info.family}, {embedder.info.parameters / 1e6:.2f}M parameters, "
          f"{collection.vectors.shape[1]}-d embeddings)")
    if isinstance(embedder, Reranker) and args.rerank > 0:
        rerank_times(engine, embedder, folder, queries[:20], args)


def rerank_times(engine, embedder, folder: Path, queries: list[str], args) -> None:
    """Queries with and without re-ranking by the matching head, alternating, so both see the same machine."""
    from mmstudio.search import EmbeddingIndex

    index = EmbeddingIndex(embedder)
    collection = index.collect_folder(folder)
    plain, reranked = [], []
    for query in queries:
        for depth, times in ((0, plain), (args.rerank, reranked)):
            start = time.perf_counter()
            index.search(collection, query, args.top, depth=depth)
            times.append(time.perf_counter() - start)
    a, b = statistics.median(plain) * 1000, statistics.median(reranked) * 1000
    print(f"re-ranking the best {args.rerank} by the matching head ({len(queries)} queries, alternating): "
          f"median {b:.0f} ms against {a:.1f} ms by embeddings alone ({b / a:.0f}x)")


if __name__ == "__main__":
    main()

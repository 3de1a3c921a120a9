"""Map layouts side by side: PCA against UMAP, at 10k and 100k points.

    python bench/map_layout.py [--sizes 10000,100000] [--dim 128]

Clustered unit vectors as in bench/index_scale.py (groups of about 50 alike pictures), laid out by
mmstudio/embedding_map.py: the PCA plane and umap-learn's UMAP (15 neighbours, cosine). Also how well
each layout keeps neighbourhoods: the share of each point's 10 nearest in the full space that are among
its 10 nearest on the map (on 1,000 points drawn at random). Goal: UMAP of 100k points within 5 minutes
on the 2-core machine. umap-learn is imported (and its functions compiled) once, before the timings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.index_scale import vectors  # noqa: E402


def kept_neighbours(high: np.ndarray, low: np.ndarray, sample: int = 1000, k: int = 10) -> float:
    rows = np.random.default_rng(1).choice(len(high), min(sample, len(high)), replace=False)
    kept = 0
    for row in rows:
        near_high = np.argpartition(-(high @ high[row]), k + 1)[:k + 1]
        near_low = np.argpartition(((low - low[row]) ** 2).sum(axis=1), k + 1)[:k + 1]
        kept += len((set(near_high.tolist()) & set(near_low.tolist())) - {row})
    return kept / (k * len(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    from mmstudio.embedding_map import pca_layout, umap_layout

    started = time.perf_counter()
    warm = vectors("clustered", 500, args.dim, 3, np.random.default_rng(0).standard_normal((10, args.dim)))
    umap_layout(warm)
    print(f"umap-learn imported and compiled in {time.perf_counter() - started:.1f} s (once per process)")
    print(f"{'points':>9} {'PCA':>8} {'UMAP':>9} {'ratio':>7} {'neighbours kept PCA / UMAP':>28}")
    for size in (int(s) for s in args.sizes.split(",")):
        centres = np.random.default_rng(0).standard_normal((max(size // 50, 1), args.dim)).astype(np.float32)
        data = vectors("clustered", size, args.dim, 1, centres)
        started = time.perf_counter()
        pca = pca_layout(data)
        pca_s = time.perf_counter() - started
        started = time.perf_counter()
        umap = umap_layout(data)
        umap_s = time.perf_counter() - started
        print(f"{size:>9,} {pca_s:>7.2f}s {umap_s:>8.1f}s {umap_s / pca_s:>6.0f}x "
              f"{kept_neighbours(data, pca.xy):>14.2f} / {kept_neighbours(data, umap.xy):.2f}", flush=True)


if __name__ == "__main__":
    main()

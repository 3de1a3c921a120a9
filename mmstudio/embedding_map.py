"""A 2-D map of a collection's embeddings: images and texts in the one space a contrastive model learned.

PCA: the plane of the two directions along which the image embeddings vary most (an SVD of the centred
vectors, fitted on at most 20,000 of them: a million vectors map in seconds). A text's embedding lives
in the same space, so the same projection places a query among the pictures it describes. A layout is
kept beside the collection's index (`cached_layout`), so a map of the same pictures opens at once. The
plane keeps only part of the distances; similarity to a query is computed in the full space and shown
as colour. `draw` makes the picture `mmstudio map --out` writes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from mmstudio.errors import MMStudioError
from mmstudio.vector_index import collection_digest

FIT_ROWS = 20_000
METHODS = ("pca", "umap")
UMAP_NEIGHBOURS = 15  # umap-learn's default: the size of the neighbourhoods a layout keeps together
UMAP_INSTALL = "pip install 'mmstudio[umap]'"
BACKGROUND, POINTS, MARKED, QUERY = (24, 26, 30), (120, 150, 200), (255, 170, 40), (255, 80, 110)


@dataclass(frozen=True, eq=False)
class MapLayout:
    xy: np.ndarray  # (N, 2) float32, one point per vector
    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (2, D): the plane's directions
    explained: float  # share of the variance the plane shows (PCA; 0 for UMAP, which keeps neighbourhoods)
    method: str = "pca"

    def place_text(self, vector: np.ndarray, similarity: np.ndarray, near: int = 10) -> np.ndarray:
        """Where a text lands: on the PCA plane, its projection; on a UMAP layout (which has no projection
        for new points), the mean place of its `near` most similar pictures, weighted by similarity."""
        if self.method == "pca":
            return place(np.asarray(vector)[None, :], self.mean, self.axes)[0]
        rows = np.argsort(-similarity)[:near]
        weights = np.maximum(similarity[rows], 0) + 1e-6
        return (self.xy[rows] * weights[:, None]).sum(axis=0) / weights.sum()


def pca_layout(vectors: np.ndarray, seed: int = 0) -> MapLayout:
    """The PCA plane of (N, D) vectors and their places on it (N >= 1)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    rows = vectors if count <= FIT_ROWS else vectors[np.random.default_rng(seed).choice(count, FIT_ROWS, False)]
    mean = rows.mean(axis=0)
    if count < 2:
        axes = np.eye(2, dim, dtype=np.float32)
        return MapLayout(np.zeros((count, 2), np.float32), mean, axes, 0.0)
    _, singular, vt = np.linalg.svd(rows - mean, full_matrices=False)
    axes = np.zeros((2, dim), np.float32)
    axes[:min(2, len(vt))] = vt[:2]
    for i in range(2):  # a sign that does not flip between runs: the largest component positive
        if axes[i, np.argmax(np.abs(axes[i]))] < 0:
            axes[i] = -axes[i]
    variance = singular ** 2
    explained = float(variance[:2].sum() / variance.sum()) if variance.sum() > 0 else 0.0
    return MapLayout(place(vectors, mean, axes), mean, axes, explained)


def place(vectors: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(M, 2) places of (M, D) vectors on a layout's plane."""
    # Projected, then shifted: the (M, D) difference is never made (512 MB for a million 128-d vectors).
    return (np.asarray(vectors, dtype=np.float32) @ axes.T - mean @ axes.T).astype(np.float32)


def clusters(vectors: np.ndarray, k: int = 8, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """(N,) group numbers 0..k-1 of k-means on the unit vectors (cosine), fitted on at most FIT_ROWS of them
    and largest group first: colours that name the same groups from one map to the next."""
    vectors = np.asarray(vectors, dtype=np.float32)
    count = len(vectors)
    k = max(1, min(int(k), count))
    if count == 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    rows = vectors if count <= FIT_ROWS else vectors[rng.choice(count, FIT_ROWS, replace=False)]
    centres = rows[rng.choice(len(rows), k, replace=False)]
    for _ in range(iterations):
        nearest = np.argmax(rows @ centres.T, axis=1)
        for c in range(k):
            members = rows[nearest == c]
            if len(members):
                mean = members.sum(axis=0)
                centres[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    labels = np.argmax(vectors @ centres.T, axis=1)
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    return np.argsort(order)[labels]


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def umap_missing() -> str:
    """Why there is no UMAP here, and how to have it."""
    if getattr(sys, "frozen", False):  # the installer leaves umap-learn out (mmstudio.spec)
        return ("this installed app has no UMAP (umap-learn and numba would add about 260 MB); a source install "
                f"has it with {UMAP_INSTALL}")
    return f"a UMAP layout needs umap-learn, not installed here: {UMAP_INSTALL} (about 110 MB to download)"


def umap_layout(vectors: np.ndarray) -> MapLayout:
    """A UMAP layout (umap-learn, cosine neighbourhoods): groups of alike pictures drawn apart, which a
    plane through the data often overlaps. Minutes for 100,000 pictures (bench/map_layout.py)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) <= UMAP_NEIGHBOURS:
        raise MMStudioError(f"a UMAP layout needs more than {UMAP_NEIGHBOURS} pictures; this map has "
                            f"{len(vectors)} (the PCA plane shows them)")
    try:
        import umap
    except ImportError:
        raise MMStudioError(umap_missing()) from None
    xy = umap.UMAP(n_neighbors=UMAP_NEIGHBOURS, metric="cosine", low_memory=True, n_jobs=-1).fit_transform(vectors)
    dim = vectors.shape[1]
    return MapLayout(np.asarray(xy, np.float32), np.zeros(dim, np.float32), np.zeros((2, dim), np.float32), 0.0,
                     "umap")


def compute_layout(vectors: np.ndarray, method: str = "pca") -> MapLayout:
    """The layout of (N, D) vectors by one of METHODS."""
    return umap_layout(vectors) if method == "umap" else pca_layout(vectors)


def caption_has(word: str):
    """A test of whether a caption holds `word` as a whole word, in any case (what "colour by a word" marks)."""
    pattern = re.compile(rf"\b{re.escape(word.strip())}\b", re.IGNORECASE)
    return lambda caption: caption is not None and bool(pattern.search(caption))


def layout_path(keys: Sequence[str], dim: int, folder: Path, method: str = "pca") -> Path:
    """Where the layout of these pictures by `method` is kept: beside their index, named by their keys."""
    return Path(folder) / f"map-{method}-{collection_digest(keys, dim)}.npz"


def saved_layout(path: Path | None, count: int) -> MapLayout | None:
    """A kept layout of `count` points, or None when there is none or it is unreadable."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as saved:
            layout = MapLayout(saved["xy"], saved["mean"], saved["axes"], float(saved["explained"]),
                               str(saved["method"]) if "method" in saved else "pca")
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return layout if layout.xy.shape == (count, 2) else None


def save_layout(layout: MapLayout, path: Path) -> None:
    """Written under a temporary name, then renamed; the newest few of each method kept. Best effort: a
    folder that cannot be written only means computing it again."""
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, xy=layout.xy, mean=layout.mean, axes=layout.axes, explained=layout.explained,
                 method=layout.method)
        os.replace(partial, path)
        kept = sorted(path.parent.glob(f"map-{layout.method}-*.npz"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-3]:
            old.unlink(missing_ok=True)
    except OSError:
        partial.unlink(missing_ok=True)


def cached_layout(vectors: np.ndarray, keys: Sequence[str], folder: Path | None, method: str = "pca") -> MapLayout:
    """The layout of a collection, read from `folder` when these pictures were laid out before, else
    computed and kept there."""
    path = layout_path(keys, vectors.shape[1], folder, method) if folder else None
    layout = saved_layout(path, len(vectors))
    if layout is None:
        layout = compute_layout(vectors, method)
        if path is not None:
            save_layout(layout, path)
    return layout


def draw(xy: np.ndarray, *, marks: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
         query: np.ndarray | None = None, size: tuple[int, int] = (1200, 900), title: str = "") -> Image.Image:
    """The map as a picture: each point a dot whose brightness grows with how many fall on it (a million
    points stay readable; dots shrink as points grow many), each (mask, colour) of `marks` drawn on top in
    its colour, a query as a ring in QUERY's colour."""
    width, height = size
    margin, top = 24, 44
    image = np.zeros((height, width, 3), np.float32) + BACKGROUND
    dot = 4 if len(xy) <= 2_000 else 3 if len(xy) <= 20_000 else 2 if len(xy) <= 200_000 else 1
    picture = None
    if len(xy):
        low, high = xy.min(axis=0), xy.max(axis=0)
        scale = float(min((width - 2 * margin) / max(high[0] - low[0], 1e-9),
                          (height - margin - top) / max(high[1] - low[1], 1e-9)))

        def pixels(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            px = (margin + (points[:, 0] - low[0]) * scale).astype(np.int64).clip(0, width - dot)
            py = (height - margin - (points[:, 1] - low[1]) * scale).astype(np.int64).clip(0, height - dot)
            return px, py

        px, py = pixels(xy)
        counts = np.zeros((height, width), np.float32)
        for dx in range(dot):
            for dy in range(dot):
                np.add.at(counts, (py + dy, px + dx), 1.0)
        shade = np.log1p(counts) / np.log1p(max(counts.max(), 1.0))
        strength = (0.45 + 0.55 * shade)[..., None] * (counts[..., None] > 0)
        image = image * (1 - strength) + np.array(POINTS, np.float32) * strength
        for mask, colour in marks:
            mx, my = pixels(xy[mask])
            for dx in range(dot + 1):
                for dy in range(dot + 1):
                    image[(my + dy).clip(0, height - 1), (mx + dx).clip(0, width - 1)] = colour
        picture = Image.fromarray(image.clip(0, 255).astype(np.uint8))
        if query is not None:
            qx, qy = pixels(np.asarray(query, np.float32).reshape(1, 2))
            ImageDraw.Draw(picture).ellipse((qx[0] - 8, qy[0] - 8, qx[0] + 8, qy[0] + 8), outline=QUERY, width=3)
    picture = picture or Image.fromarray(image.astype(np.uint8))
    pen = ImageDraw.Draw(picture)
    for i, line in enumerate(title.splitlines()[:2]):
        pen.text((margin, 8 + 16 * i), line, fill=(230, 230, 230))
    return picture

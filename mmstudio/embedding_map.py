"""A 2-D map of a collection's embeddings: images and texts in the one space a contrastive model learned.

PCA: the plane of the two directions along which the image embeddings vary most (an SVD of the centred
vectors, fitted on at most 20,000 of them: a million vectors map in seconds). A text's embedding lives
in the same space, so the same projection places a query among the pictures it describes. A layout is
kept beside the collection's index (`cached_layout`), so a map of the same pictures opens at once. The
plane keeps only part of the distances; similarity to a query is computed in the full space and shown
as colour. `draw` makes the picture `mmstudio map --out` writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from mmstudio.vector_index import collection_digest

FIT_ROWS = 20_000
LAYOUT_PREFIX = "map-"
BACKGROUND, POINTS, MARKED, QUERY = (24, 26, 30), (120, 150, 200), (255, 170, 40), (255, 80, 110)


@dataclass(frozen=True, eq=False)
class MapLayout:
    xy: np.ndarray  # (N, 2) float32, one point per vector
    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (2, D): the plane's directions
    explained: float  # share of the variance the plane shows


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


def cached_layout(vectors: np.ndarray, keys: Sequence[str], folder: Path | None) -> MapLayout:
    """The PCA layout of a collection, read from `folder` when these pictures were laid out before, else
    computed and kept there (best effort: a folder that cannot be written only means computing it again)."""
    path = Path(folder) / f"{LAYOUT_PREFIX}{collection_digest(keys, vectors.shape[1])}.npz" if folder else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as saved:
                layout = MapLayout(saved["xy"], saved["mean"], saved["axes"], float(saved["explained"]))
            if layout.xy.shape == (len(vectors), 2):
                return layout
        except (OSError, ValueError, KeyError):
            pass  # unreadable: computed again below
    layout = pca_layout(vectors)
    if path is not None:
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
        try:
            np.savez(partial, xy=layout.xy, mean=layout.mean, axes=layout.axes, explained=layout.explained)
            os.replace(partial, path)
            for old in sorted(path.parent.glob(f"{LAYOUT_PREFIX}*.npz"), key=lambda p: p.stat().st_mtime)[:-3]:
                old.unlink(missing_ok=True)
        except OSError:
            partial.unlink(missing_ok=True)
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

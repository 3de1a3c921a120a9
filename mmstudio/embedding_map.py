"""A 2-D map of a collection's embeddings: images and texts in the one space a contrastive model learned.

PCA: the plane of the two directions along which the image embeddings vary most (an SVD of the centred
vectors, fitted on at most 20,000 of them: a million vectors map in seconds). A text's embedding lives
in the same space, so the same projection places a query among the pictures it describes. The plane
keeps only part of the distances; similarity to a query is computed in the full space and shown as
colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIT_ROWS = 20_000


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
    return ((np.asarray(vectors, dtype=np.float32) - mean) @ axes.T).astype(np.float32)

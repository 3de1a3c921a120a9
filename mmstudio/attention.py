"""Attention evidence on the model's patch grid, and the geometry of "pointing".

Arrays here are numpy, never torch, so the GUI, the CLI and the evaluation read
them without knowing the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

LayerChoice = Union[int, str]  # a model layer index, "default" or "mean"
HeadChoice = Union[int, str]  # a head index, "mean" or "max"
# Words that name nothing in the image: a caption's map opens on its first other word.
STOP_WORDS = frozenset({"a", "the", "and"})


@dataclass(frozen=True, eq=False)
class AttentionStack:
    """Every layer's and head's attention of a few tokens onto the image patches.

    `weights` has shape (T, L, H, rows, cols): T tokens (or texts), L recorded
    layers (model indices in `layers`), H heads. Keeping the whole stack lets a
    viewer switch layer and head aggregation without running the model again.
    """

    tokens: tuple[str, ...]
    weights: np.ndarray  # (T, L, H, rows, cols) float32
    layers: tuple[int, ...]
    default_layer: LayerChoice = "mean"

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.weights.shape[-2]), int(self.weights.shape[-1])

    def maps(self, layer: LayerChoice = "default", head: HeadChoice = "mean") -> np.ndarray:
        """(T, rows, cols) maps, each scaled to sum to 1 (all-zero maps stay zero)."""
        if layer == "default":
            layer = self.default_layer
        if layer == "mean":
            per_layer = self.weights.mean(axis=1)
        else:
            if int(layer) not in self.layers:
                raise ValueError(f"layer {layer} was not recorded; recorded layers: {list(self.layers)}")
            per_layer = self.weights[:, self.layers.index(int(layer))]
        # per_layer: (T, H, rows, cols)
        if head == "mean":
            maps = per_layer.mean(axis=1)
        elif head == "max":
            maps = per_layer.max(axis=1)
        else:
            maps = per_layer[:, int(head)]
        return normalize_maps(maps)

    def select(self, indices: Sequence[int]) -> "AttentionStack":
        return AttentionStack(
            tokens=tuple(self.tokens[i] for i in indices),
            weights=self.weights[list(indices)],
            layers=self.layers,
            default_layer=self.default_layer,
        )


def first_content_token(tokens: Sequence[str]) -> int:
    """The index of the first token worth showing the map of (not a STOP_WORDS word); 0 when there is none."""
    return next((i for i, token in enumerate(tokens) if token not in STOP_WORDS), 0)


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float32)
    # Sum over every axis but the first; reshape(T, -1) cannot do that for T == 0 (an empty caption).
    totals = maps.sum(axis=tuple(range(1, maps.ndim)), keepdims=True)
    return np.divide(maps, totals, out=np.zeros_like(maps), where=totals > 0)


def grid_shape(num_patches: int) -> tuple[int, int]:
    side = int(round(num_patches**0.5))
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patches do not form a square grid")
    return side, side


def patches_to_grid(attention: np.ndarray) -> np.ndarray:
    """(..., 1 + rows*cols) attention over [CLS] + patches -> (..., rows, cols), [CLS] dropped."""
    patches = attention[..., 1:]
    rows, cols = grid_shape(patches.shape[-1])
    return patches.reshape(*patches.shape[:-1], rows, cols)


def peak_point(amap: np.ndarray, width: float, height: float) -> tuple[float, float]:
    """The image-pixel center of a map's highest cell."""
    rows, cols = amap.shape
    r, c = np.unravel_index(int(np.argmax(amap)), amap.shape)
    return (c + 0.5) * width / cols, (r + 0.5) * height / rows


def points_at(amap: np.ndarray, bbox: Sequence[float], width: float, height: float) -> bool:
    """Shapes World's grounding rule: the peak cell's center lies inside the box grown by one patch."""
    rows, cols = amap.shape
    x, y = peak_point(amap, width, height)
    grow_x, grow_y = width / cols, height / rows
    x0, y0, x1, y1 = bbox
    return (x0 - grow_x) <= x <= (x1 + grow_x) and (y0 - grow_y) <= y <= (y1 + grow_y)

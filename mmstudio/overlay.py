"""Attention maps drawn over images: colormaps, upsampling and blending (numpy + Pillow).

The GUI shows these, "save overlay as PNG" writes them, and tests check them,
all through the same code.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Control points (position, RGB) of perceptually ordered colormaps, interpolated linearly.
COLORMAPS: dict[str, list[tuple[float, tuple[int, int, int]]]] = {
    "inferno": [(0.0, (0, 0, 4)), (0.25, (87, 16, 110)), (0.5, (188, 55, 84)), (0.75, (249, 142, 9)),
                (1.0, (252, 255, 164))],
    "viridis": [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
                (1.0, (253, 231, 37))],
    "jet": [(0.0, (0, 0, 131)), (0.125, (0, 60, 170)), (0.375, (5, 255, 255)), (0.625, (255, 255, 0)),
            (0.875, (250, 0, 0)), (1.0, (128, 0, 0))],
    "gray": [(0.0, (0, 0, 0)), (1.0, (255, 255, 255))],
}


# The default style: it dims what the model did not look at and leaves what it looked at as it is, so the
# colours of the evidence stay true (a colormap laid over a pink shape turns it purple, in an app that
# answers colour questions). The colormaps remain for reading the map's values.
SPOTLIGHT = "spotlight"
STYLES = (SPOTLIGHT, *COLORMAPS)
_SHADE = (16, 16, 24)  # what the unattended parts are dimmed towards
_SHADE_DEPTH = 0.85  # how far, at opacity 1 and no attention
_LIT = 0.6  # the share of the peak from which a cell is not shaded at all


def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    points = COLORMAPS[name]
    xs = np.array([p for p, _ in points])
    colors = np.array([c for _, c in points], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, xs, colors[:, k]) for k in range(3)], axis=1).round().astype(np.uint8)


def heatmap(amap: np.ndarray, size: tuple[int, int], colormap: str = "inferno") -> tuple[Image.Image, np.ndarray]:
    """(RGB heatmap image of `size` (w, h), (h, w) float weights in [0, 1]) from a (rows, cols) map.

    Bilinear upsampling of the grid keeps the patch structure readable without
    hard block edges; the map is scaled to its own maximum.
    """
    weights = upsampled_weights(amap, size)
    rgb = colormap_lut(colormap)[(weights * 255).astype(np.uint8)]
    return Image.fromarray(rgb, mode="RGB"), weights


def upsampled_weights(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) weights in [0, 1] of `size` (w, h): the map scaled to its maximum, upsampled bilinearly."""
    amap = np.asarray(amap, dtype=np.float32)
    peak = float(amap.max()) if amap.size else 0.0
    scaled = amap / peak if peak > 0 else np.zeros_like(amap)
    grid = Image.fromarray(scaled, mode="F").resize(size, resample=Image.BILINEAR)
    return np.clip(np.asarray(grid, dtype=np.float32), 0.0, 1.0)


def overlay_layer(amap: np.ndarray, size: tuple[int, int], style: str = SPOTLIGHT) -> tuple[np.ndarray, np.ndarray]:
    """((h, w, 3) uint8 colours, (h, w) alpha in [0, 1]) to lay over an image of `size` (w, h), at opacity 1.

    A colormap: strong cells opaque, weak ones letting the image through. The spotlight: a shade over
    the weak cells only, none over the strongest. The window and `blend` draw the same layer.
    """
    if style == SPOTLIGHT:
        weights = upsampled_weights(amap, size)
        colors = np.broadcast_to(np.array(_SHADE, dtype=np.uint8), (*weights.shape, 3))
        # Cells at 60 % of the peak or more stay as they are (upsampling softens the peak itself).
        return np.ascontiguousarray(colors), _SHADE_DEPTH * np.clip(1.0 - weights / _LIT, 0.0, 1.0)
    image, weights = heatmap(amap, size, style)
    return np.asarray(image), 0.25 + 0.75 * weights


def blend(image: Image.Image, amap: np.ndarray, *, opacity: float = 0.6, colormap: str = SPOTLIGHT) -> Image.Image:
    """The image with the map's layer (`overlay_layer`) laid over it at `opacity`."""
    base = image.convert("RGB")
    colors, alpha = overlay_layer(amap, base.size, colormap)
    alpha = (np.clip(opacity, 0.0, 1.0) * alpha)[..., None]
    mixed = np.asarray(base, dtype=np.float32) * (1 - alpha) + np.asarray(colors, dtype=np.float32) * alpha
    return Image.fromarray(mixed.round().astype(np.uint8), mode="RGB")

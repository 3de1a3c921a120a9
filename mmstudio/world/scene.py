"""Scenes of Shapes World v1: what is where, and how it is to be drawn.

A `Scene` is pure data (frozen). `sample_scene` draws one from a numpy Generator;
everything random about the rendering (tints, noise, jitter, outlines) is drawn
here too and kept in `RenderStyle`, so `render_scene(scene)` is a pure function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmstudio.world import geometry
from mmstudio.world.vocab import COLORS, REFERENCE_RGB, SHAPES, SIZE_RANGES, SIZES

CANONICAL_SIZE = 128
MIN_SIZE, MAX_SIZE = 96, 256
CANONICAL_SHARE = 0.3          # share of scenes drawn at the canonical 128 px
MAX_ROTATION = 25.0            # degrees, every shape but the circle
MAX_JITTER = 20                # per channel, around the reference color
MAX_NOISE_SIGMA = 8.0
X_GAP = 0.04                   # min x-center distance, fraction of the side
X_GAP_MARGIN = 0.5             # px on top of X_GAP, so 0.1 px rounding never breaks it
OBJECT_GAP = 0.02              # min gap between bounding circles, fraction of the side
OBJECT_GAP_PX = 1.0            # px on top of OBJECT_GAP (antialiasing bleed)
EDGE_MARGIN_PX = 1.0           # bbox stays this far inside the canvas
OUTLINE2_MIN_PX = 24.0         # smaller objects get 1 px outlines only


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    center: tuple[float, float]
    bbox: tuple[float, float, float, float]
    rotation: float
    diameter: float


@dataclass(frozen=True)
class RenderStyle:
    """Rendering variation of one scene.

    background: "uniform" (bg_rgb), "gradient" (bg_rgb -> bg_rgb2 along
    gradient_angle) or "texture" (bg_rgb plus smooth low-frequency noise of
    amplitude texture_amp); every background channel stays in 200..255.
    object_rgb / outline_px are per object, in the scene's object order.
    """

    bg_mode: str
    bg_rgb: tuple[int, int, int]
    bg_rgb2: tuple[int, int, int]
    gradient_angle: float
    texture_amp: float
    noise_sigma: float
    antialias: bool
    object_rgb: tuple[tuple[int, int, int], ...]
    outline_px: tuple[int, ...]
    outline_rgb: tuple[int, int, int]
    seed: int


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    objects: tuple[SceneObject, ...]
    style: RenderStyle


class PlacementError(RuntimeError):
    """No layout found (only for object lists that cannot fit at all)."""


def _sample_side(rng: np.random.Generator) -> int:
    if rng.random() < CANONICAL_SHARE:
        return CANONICAL_SIZE
    return int(rng.integers(MIN_SIZE, MAX_SIZE + 1))


def _place(rng: np.random.Generator, side: int, shapes: list[str], diameters: list[float],
           rotations: list[float], attempts: int = 40, candidates: int = 96):
    """Centers for the objects, or None. Largest first, random valid candidate each."""
    n = len(shapes)
    radii = np.array([geometry.bounding_radius(s, d) for s, d in zip(shapes, diameters)])
    # bbox extents relative to the center (rotation is known already)
    ext = []
    for s, d, r in zip(shapes, diameters, rotations):
        x0, y0, x1, y1 = geometry.bbox(s, (0.0, 0.0), d, r)
        ext.append((x0, y0, x1, y1))
    order = np.argsort(-radii, kind="stable")
    gap = OBJECT_GAP * side + OBJECT_GAP_PX
    xgap = X_GAP * side + X_GAP_MARGIN
    for _ in range(attempts):
        centers = [None] * n
        placed: list[int] = []
        ok = True
        for i in order:
            x0, y0, x1, y1 = ext[i]
            lo_x, hi_x = EDGE_MARGIN_PX - x0, side - EDGE_MARGIN_PX - x1
            lo_y, hi_y = EDGE_MARGIN_PX - y0, side - EDGE_MARGIN_PX - y1
            if lo_x > hi_x or lo_y > hi_y:
                return None
            cx = rng.uniform(lo_x, hi_x, candidates)
            cy = rng.uniform(lo_y, hi_y, candidates)
            valid = np.ones(candidates, dtype=bool)
            for j in placed:
                px, py = centers[j]
                dist = np.hypot(cx - px, cy - py)
                valid &= dist >= radii[i] + radii[j] + gap
                valid &= np.abs(cx - px) >= xgap
            hits = np.flatnonzero(valid)
            if hits.size == 0:
                ok = False
                break
            k = hits[0]  # candidates are i.i.d., the first valid one is a uniform pick
            centers[i] = (float(cx[k]), float(cy[k]))
            placed.append(int(i))
        if ok:
            return centers
    return None


def _sample_style(rng: np.random.Generator, objects: Sequence[SceneObject]) -> RenderStyle:
    mode = ("uniform", "gradient", "texture")[int(rng.integers(0, 3))]
    bg = rng.integers(210, 256, 3)
    if mode == "gradient":
        bg2 = np.clip(bg + rng.integers(-30, 31, 3), 200, 255)
    else:
        bg2 = bg
    angle = float(rng.uniform(0.0, 360.0))
    texture_amp = float(rng.uniform(3.0, 10.0)) if mode == "texture" else 0.0
    noise_sigma = 0.0 if rng.random() < 0.2 else float(rng.uniform(0.0, MAX_NOISE_SIGMA))
    antialias = bool(rng.random() < 0.7)
    object_rgb = []
    for o in objects:
        ref = np.array(REFERENCE_RGB[o.color])
        object_rgb.append(tuple(int(v) for v in np.clip(
            ref + rng.integers(-MAX_JITTER, MAX_JITTER + 1, 3), 0, 255)))
    outline_px = [0] * len(objects)
    if rng.random() < 0.35:  # some scenes outline some of their objects
        for i, o in enumerate(objects):
            if rng.random() < 0.6:
                # 2 px only on objects big enough to keep their color readable
                outline_px[i] = int(rng.integers(1, 3)) if o.diameter >= OUTLINE2_MIN_PX else 1
    g = int(rng.integers(25, 80))
    return RenderStyle(
        bg_mode=mode,
        bg_rgb=tuple(int(v) for v in bg),
        bg_rgb2=tuple(int(v) for v in bg2),
        gradient_angle=round(angle, 3),
        texture_amp=round(texture_amp, 3),
        noise_sigma=round(noise_sigma, 3),
        antialias=antialias,
        object_rgb=tuple(object_rgb),
        outline_px=tuple(outline_px),
        outline_rgb=(g, g, g),
        seed=int(rng.integers(0, 2**63 - 1)),
    )


def sample_scene(rng: np.random.Generator, *, shapes: Sequence[str] = SHAPES,
                 colors: Sequence[str] = COLORS, size: int | None = None,
                 n_objects: int | None = None) -> Scene:
    """Draw one scene: 1-4 objects (uniform), side 96..256 (30 % at 128) unless given."""
    shapes = tuple(shapes)
    colors = tuple(colors)
    if not shapes or not colors:
        raise ValueError("need at least one shape and one color")
    for c in colors:
        if c not in REFERENCE_RGB:
            raise ValueError(f"unknown color {c!r}")
    side = _sample_side(rng) if size is None else int(size)
    if not MIN_SIZE // 2 <= side <= 4096:
        raise ValueError(f"canvas size {side} out of range")
    n = int(rng.integers(1, 5)) if n_objects is None else int(n_objects)
    if not 1 <= n <= 4:
        raise ValueError(f"n_objects must be 1..4, got {n}")
    obj_shapes = [shapes[int(rng.integers(len(shapes)))] for _ in range(n)]
    obj_colors = [colors[int(rng.integers(len(colors)))] for _ in range(n)]
    obj_sizes = [SIZES[int(rng.integers(len(SIZES)))] for _ in range(n)]
    centers = None
    for _ in range(50):
        diameters = [float(rng.uniform(*SIZE_RANGES[z])) * side for z in obj_sizes]
        rotations = [0.0 if s == "circle" else float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
                     for s in obj_shapes]
        centers = _place(rng, side, obj_shapes, diameters, rotations)
        if centers is not None:
            break
    if centers is None:  # pragma: no cover - not seen for 1-4 objects
        raise PlacementError(f"could not place {n} objects on {side} px")
    objects = []
    for s, c, z, d, r, ctr in zip(obj_shapes, obj_colors, obj_sizes, diameters, rotations,
                                  centers):
        objects.append(SceneObject(shape=s, color=c, size=z, center=ctr,
                                   bbox=geometry.bbox(s, ctr, d, r), rotation=r, diameter=d))
    objects.sort(key=lambda o: o.center[0])
    style = _sample_style(rng, objects)
    return Scene(width=side, height=side, objects=tuple(objects), style=style)

"""Draw a `Scene` to a Pillow RGB image (pure function of the scene).

Each object is drawn as a coverage mask on a small tile around its bbox, 4x
supersampled and box-reduced (thresholded at 50 % for aliased edges), then the
object color (and a dark outline, if any) is blended in through the mask.
Pixel noise comes last and is seeded by `scene.style.seed`.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from mmstudio.world import geometry
from mmstudio.world.scene import RenderStyle, Scene, SceneObject

SUPERSAMPLE = 4
_HARD_EDGE = [0] * 128 + [255] * 128


def _background(width: int, height: int, style: RenderStyle,
                rng: np.random.Generator) -> Image.Image:
    if style.bg_mode == "gradient":
        a = math.radians(style.gradient_angle)
        xs = (np.arange(width, dtype=np.float32) + 0.5) * math.cos(a)
        ys = (np.arange(height, dtype=np.float32) + 0.5) * math.sin(a)
        t = ys[:, None] + xs[None, :]
        lo, hi = float(t.min()), float(t.max())
        t = (t - lo) / max(hi - lo, 1e-6)
        c0 = np.array(style.bg_rgb, dtype=np.float32)
        c1 = np.array(style.bg_rgb2, dtype=np.float32)
        arr = c0 + t[..., None] * (c1 - c0)
        arr = np.clip(np.rint(arr), 200, 255).astype(np.uint8)
        return Image.fromarray(arr, "RGB")
    if style.bg_mode == "texture":
        cells = 5
        low = np.array(style.bg_rgb, dtype=np.float32) + style.texture_amp * rng.standard_normal(
            (cells, cells, 3), dtype=np.float32)
        low = np.clip(np.rint(low), 200, 255).astype(np.uint8)
        # bilinear interpolation stays within the range of the low-res values
        return Image.fromarray(low, "RGB").resize((width, height), Image.Resampling.BILINEAR)
    return Image.new("RGB", (width, height), style.bg_rgb)


def _tile(obj: SceneObject, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = obj.bbox
    return (max(0, math.floor(x0) - 1), max(0, math.floor(y0) - 1),
            min(width, math.ceil(x1) + 1), min(height, math.ceil(y1) + 1))


def _mask(obj: SceneObject, tile: tuple[int, int, int, int], antialias: bool,
          outline: int) -> Image.Image:
    """Coverage mask ("L") of the object (outline == 0) or of its outline band."""
    ss = SUPERSAMPLE
    tx0, ty0, tx1, ty1 = tile
    mask = Image.new("L", ((tx1 - tx0) * ss, (ty1 - ty0) * ss), 0)
    draw = ImageDraw.Draw(mask)
    fill = None if outline else 255
    line = 255 if outline else None
    width = outline * ss
    if obj.shape == "circle":
        r = obj.diameter / 2.0
        cx, cy = obj.center
        box = [(cx - r - tx0) * ss, (cy - r - ty0) * ss,
               (cx + r - tx0) * ss - 1, (cy + r - ty0) * ss - 1]
        draw.ellipse(box, fill=fill, outline=line, width=max(width, 1))
    else:
        pts = geometry.polygon(obj.shape, obj.center, obj.diameter, obj.rotation)
        pts = (pts - (tx0, ty0)) * ss - 0.5
        draw.polygon([tuple(p) for p in pts.tolist()], fill=fill, outline=line,
                     width=max(width, 1))
    mask = mask.reduce(SUPERSAMPLE)  # box filter: area coverage on the supersampled grid
    if not antialias:
        # aliased edges: a pixel is in when most of it is (Pillow's own 1x fill is
        # half a pixel too fat, which would make the bbox wrong)
        mask = mask.point(_HARD_EDGE)
    return mask


def render_scene(scene: Scene) -> Image.Image:
    """RGB image of scene.width x scene.height."""
    style = scene.style
    rng = np.random.default_rng(style.seed)
    img = _background(scene.width, scene.height, style, rng)
    for obj, rgb, outline in zip(scene.objects, style.object_rgb, style.outline_px):
        tile = _tile(obj, scene.width, scene.height)
        img.paste(rgb, tile, _mask(obj, tile, style.antialias, 0))
        if outline:
            img.paste(style.outline_rgb, tile, _mask(obj, tile, style.antialias, outline))
    if style.noise_sigma > 0:
        arr = np.asarray(img, dtype=np.float32)
        noise = rng.standard_normal(arr.shape, dtype=np.float32)
        noise *= style.noise_sigma
        arr = arr + noise
        np.rint(arr, out=arr)
        np.clip(arr, 0, 255, out=arr)
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
    return img

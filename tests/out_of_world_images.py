"""Pictures that are not Shapes World scenes, made here from a seed: what the out-of-world score must flag.

Each maker takes a numpy Generator and returns one RGB image; `corpus(count, seed)` gives `count` of each
kind, by category. None of them was used to choose the threshold (that comes from in-domain scenes
alone), so they measure the score; they do not tune it. UI screenshots need Qt and live in the GUI-side
test; the scikit-image sample photos come from the package's data folder when it is installed.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Maker = Callable[[np.random.Generator], Image.Image]

WORDS = ("the quick brown fox jumps over the lazy dog lorem ipsum dolor sit amet invoice total "
         "settings cancel apply mountain river report quarterly revenue meeting agenda def return "
         "import numpy as np for i in range print hello world").split()


def _size(rng: np.random.Generator, low: int = 160, high: int = 480) -> tuple[int, int]:
    """Photos and screenshots are rarely square: any aspect from 1:2 to 2:1."""
    width = int(rng.integers(low, high))
    return width, int(np.clip(width * rng.uniform(0.5, 2.0), low // 2, high * 2))


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    return xx / max(width - 1, 1), yy / max(height - 1, 1)


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def _fractal(rng: np.random.Generator, width: int, height: int, octaves: int = 6, persistence: float = 0.55
             ) -> np.ndarray:
    """Fractal (fBm-like) value noise in [0, 1]: octaves of random grids, each upsampled smoothly."""
    total = np.zeros((height, width))
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        grid = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8), "L")
        total += amplitude * np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
        norm += amplitude * 255
        amplitude *= persistence
    total /= norm
    return (total - total.min()) / max(float(np.ptp(total)), 1e-9)


# ------------------------------------------------------------ gradients and noise


def gradient(rng: np.random.Generator) -> Image.Image:
    """A linear or radial gradient between two to four colors of any lightness."""
    width, height = _size(rng)
    xx, yy = _grid(width, height)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
    else:
        fx, fy = rng.uniform(0, 1, 2)
        t = np.hypot(xx - fx, yy - fy)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-9)
    stops = rng.uniform(0, 255, (int(rng.integers(2, 5)), 3))
    positions = np.linspace(0, 1, len(stops))
    pixels = np.stack([np.interp(t, positions, stops[:, c]) for c in range(3)], axis=-1)
    return _to_image(pixels)


def noise(rng: np.random.Generator) -> Image.Image:
    """Pixel noise: uniform colour, Gaussian around a random colour, grey, salt and pepper, or blocky."""
    width, height = _size(rng)
    kind = int(rng.integers(5))
    if kind == 0:
        pixels = rng.uniform(0, 255, (height, width, 3))
    elif kind == 1:
        pixels = rng.uniform(0, 255, 3) + rng.normal(0, rng.uniform(20, 80), (height, width, 3))
    elif kind == 2:
        pixels = np.repeat(rng.uniform(0, 255, (height, width, 1)), 3, axis=2)
    elif kind == 3:
        pixels = np.where(rng.random((height, width, 1)) < 0.5, 0.0, 255.0).repeat(3, axis=2)
    else:
        cells = rng.uniform(0, 255, (int(rng.integers(4, 24)), int(rng.integers(4, 24)), 3)).astype(np.uint8)
        return Image.fromarray(cells, "RGB").resize((width, height), Image.Resampling.NEAREST)
    return _to_image(pixels)


# ------------------------------------------------------------------- rendered text


def _words(rng: np.random.Generator, count: int) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), count))


def text(rng: np.random.Generator) -> Image.Image:
    """Rendered text: a page of dark lines on white, a coloured banner, or big words on any background."""
    width, height = _size(rng, 200, 560)
    kind = int(rng.integers(3))
    if kind == 0:  # a document page
        background, ink = tuple(int(v) for v in rng.integers(235, 256, 3)), (20, 20, 20)
        size = int(rng.integers(11, 20))
    elif kind == 1:  # a coloured banner with light text
        background = tuple(int(v) for v in rng.integers(0, 160, 3))
        ink = tuple(int(v) for v in rng.integers(200, 256, 3))
        size = int(rng.integers(18, 40))
    else:  # headline words in a random colour on a random background
        background = tuple(int(v) for v in rng.integers(0, 256, 3))
        ink = tuple(int(255 - v) for v in background)
        size = int(rng.integers(30, 70))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size)
    y = int(rng.integers(4, 20))
    while y < height - size:
        draw.text((int(rng.integers(4, 24)), y), _words(rng, int(rng.integers(3, 12))), fill=ink, font=font)
        y += int(size * rng.uniform(1.3, 1.8))
    return image


# ------------------------------------------------------------ photo-like scenes


def landscape(rng: np.random.Generator) -> Image.Image:
    """Sky gradient, a sun, two or three ridges of fractal terrain, and a textured foreground."""
    width, height = _size(rng, 200, 520)
    xx, yy = _grid(width, height)
    dusk = rng.random() < 0.3
    top = np.array([30, 60, 140]) if not dusk else np.array([60, 30, 90])
    horizon = np.array([170, 200, 235]) if not dusk else np.array([250, 150, 80])
    top, horizon = top + rng.normal(0, 15, 3), horizon + rng.normal(0, 15, 3)
    pixels = top + yy[..., None] * (horizon - top)
    sun_x, sun_y, radius = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.4), rng.uniform(0.03, 0.08)
    glow = np.exp(-(np.hypot(xx - sun_x, (yy - sun_y) * height / width) / (radius * 3)) ** 2)
    pixels = pixels + glow[..., None] * (np.array([255, 240, 200]) - pixels) * 0.8
    texture = _fractal(rng, width, height)
    ridges = int(rng.integers(2, 4))
    for ridge in range(ridges):
        line = _fractal(rng, width, 1, octaves=7)[0]
        level = 0.35 + 0.18 * ridge + 0.12 * line
        ground = yy > level[None, :]
        shade = 0.55 + 0.45 * ridge / ridges
        color = (np.array([60, 90, 60]) if ridge < ridges - 1 else np.array([70, 110, 40])) * shade
        color = color + rng.normal(0, 12, 3)
        pixels = np.where(ground[..., None], color * (0.7 + 0.6 * texture[..., None]), pixels)
    return _to_image(pixels + rng.normal(0, 3, pixels.shape))


def fractal_texture(rng: np.random.Generator) -> Image.Image:
    """Fractal noise through a random colour ramp: rock, cloud, marble, bark."""
    width, height = _size(rng)
    field = _fractal(rng, width, height, octaves=int(rng.integers(4, 8)), persistence=rng.uniform(0.4, 0.7))
    if rng.random() < 0.3:  # marble veins
        xx, _ = _grid(width, height)
        field = 0.5 + 0.5 * np.sin((xx * rng.uniform(3, 10) + field * rng.uniform(3, 8)) * math.pi)
    ramp = rng.uniform(0, 255, (int(rng.integers(2, 5)), 3))
    positions = np.linspace(0, 1, len(ramp))
    return _to_image(np.stack([np.interp(field, positions, ramp[:, c]) for c in range(3)], axis=-1))


def shaded_blobs(rng: np.random.Generator) -> Image.Image:
    """Blurred blobs lit from one side, on a blurred background: an out-of-focus photo of things."""
    width, height = _size(rng)
    base = rng.uniform(20, 235, 3)
    pixels = base + (_fractal(rng, width, height, octaves=3)[..., None] - 0.5) * rng.uniform(40, 120)
    xx, yy = _grid(width, height)
    light = rng.normal(0, 1, 2)
    light /= np.linalg.norm(light)
    for _ in range(int(rng.integers(3, 12))):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        dx, dy = (xx - cx) / r, (yy - cy) * height / width / r
        inside = dx ** 2 + dy ** 2
        shading = np.clip(0.6 - 0.8 * (dx * light[0] + dy * light[1]), 0.2, 1.4)
        color = rng.uniform(0, 255, 3)
        pixels = np.where((inside < 1)[..., None], color * shading[..., None], pixels)
    image = _to_image(pixels)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 6)))


# ------------------------------------------------------------------ sample photos


def sample_photo_folder() -> Path | None:
    """scikit-image's bundled sample pictures (astronaut, coffee, ...), read as files: no scipy import."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


# Photographs and scans; its synthetic test patterns (chessboard, phantom) are not photos.
SAMPLE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
                 "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
                 "logo.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
                 "horse.png", "microaneurysms.png", "clock_motion.png")


def sample_photos() -> list[Image.Image]:
    folder = sample_photo_folder()
    if folder is None:
        return []
    photos = []
    for name in SAMPLE_PHOTOS:
        path = folder / name
        if path.is_file():
            with Image.open(path) as image:
                photos.append(image.convert("RGB"))
    return photos


MAKERS: dict[str, Maker] = {
    "gradient": gradient, "noise": noise, "text": text, "landscape": landscape,
    "fractal texture": fractal_texture, "shaded blobs": shaded_blobs,
}


def corpus(count: int, seed: int) -> dict[str, list[Image.Image]]:
    """`count` pictures of each made kind (each kind its own stream of the seed), plus the sample photos."""
    made = {}
    for k, (name, make) in enumerate(MAKERS.items()):
        rng = np.random.default_rng([seed, k])
        made[name] = [make(rng) for _ in range(count)]
    photos = sample_photos()
    if photos:
        made["sample photos"] = photos
    return made

#!/usr/bin/env python
"""Held-out Shapes World v1 generator: an independent renderer for judging models.

    python bench/heldout_world.py --out DIR --count N --seed S [--size PX]

Writes DIR/images/000000.png ... and DIR/metadata.jsonl with the same keys as
mmstudio's generator (file_name, caption, questions, negatives, objects, width,
height). It shares NO code with mmstudio: its own scene sampling, its own
rasterizer (signed distances and even-odd point-in-polygon tests on a
supersampled numpy grid; Pillow only encodes the PNG), its own texts. Models
trained on mmstudio.world are judged here on pictures they never saw the like of.

Conventions (spec: specs/shapes-world.md): "diameter" is the circle's diameter,
the square's and the triangle's side, and the star's outer diameter (inner radius
0.5 of the outer one here). Centers are rotation centers; bboxes are the exact
axis-aligned boxes of the drawn geometry.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHAPE_WORDS = ["circle", "square", "triangle", "star"]
COLOR_RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 90, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 130, 20),
}
COLOR_WORDS = list(COLOR_RGB)
NUMBERS = ["zero", "one", "two", "three", "four"]
SMALL, LARGE = (0.12, 0.16), (0.22, 0.28)
STAR_INNER = 0.5


# ---------------------------------------------------------------- geometry

def outline_points(shape, cx, cy, d, angle_deg):
    """Polygon vertices (k, 2) in pixel coordinates (y down); None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        base = [(math.radians(a), d / math.sqrt(2.0)) for a in (45, 135, 225, 315)]
    elif shape == "triangle":
        base = [(math.radians(a), d / math.sqrt(3.0)) for a in (90, 210, 330)]
    else:  # star, first tip up
        base = [(math.radians(90 + 36 * k), d / 2 * (1.0 if k % 2 == 0 else STAR_INNER))
                for k in range(10)]
    t = math.radians(angle_deg)
    # polar angles measured counter-clockwise with y up; flip y for the image
    return np.array([(cx + r * math.cos(a + t), cy - r * math.sin(a + t)) for a, r in base])


def extent(shape, cx, cy, d, angle_deg):
    pts = outline_points(shape, cx, cy, d, angle_deg)
    if pts is None:
        return (cx - d / 2, cy - d / 2, cx + d / 2, cy + d / 2)
    return (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())


def enclosing_radius(shape, d):
    return {"circle": d / 2, "square": d / math.sqrt(2.0), "triangle": d / math.sqrt(3.0),
            "star": d / 2}[shape]


# ---------------------------------------------------------------- sampling

def draw_layout(rng, side, n):
    kinds = [(SHAPE_WORDS[rng.integers(4)], COLOR_WORDS[rng.integers(6)],
              "large" if rng.random() < 0.5 else "small") for _ in range(n)]
    for _ in range(2000):
        objs = []
        for shape, color, size in kinds:
            lo, hi = LARGE if size == "large" else SMALL
            d = side * rng.uniform(lo, hi)
            ang = 0.0 if shape == "circle" else rng.uniform(-25.0, 25.0)
            objs.append([shape, color, size, d, ang])
        # large objects first: easier to fit
        objs.sort(key=lambda o: -enclosing_radius(o[0], o[3]))
        placed = []
        for shape, color, size, d, ang in objs:
            x0, y0, x1, y1 = extent(shape, 0.0, 0.0, d, ang)
            for _try in range(200):
                cx = rng.uniform(1.5 - x0, side - 1.5 - x1)
                cy = rng.uniform(1.5 - y0, side - 1.5 - y1)
                good = True
                for p in placed:
                    if abs(cx - p["cx"]) < 0.04 * side + 0.6:
                        good = False
                        break
                    need = enclosing_radius(shape, d) + enclosing_radius(p["shape"], p["d"])
                    if math.hypot(cx - p["cx"], cy - p["cy"]) < need + 0.025 * side + 1.0:
                        good = False
                        break
                if good:
                    placed.append(dict(shape=shape, color=color, size=size, d=d, ang=ang,
                                       cx=cx, cy=cy))
                    break
            else:
                break
        if len(placed) == n:
            placed.sort(key=lambda p: p["cx"])
            return placed
    raise RuntimeError("layout failed")


# ---------------------------------------------------------------- rasterizer

def signed_distance(px, py, obj):
    """Signed distance (negative inside) of points (px, py) to the object's edge."""
    if obj["shape"] == "circle":
        return np.hypot(px - obj["cx"], py - obj["cy"]) - obj["d"] / 2
    pts = outline_points(obj["shape"], obj["cx"], obj["cy"], obj["d"], obj["ang"])
    ax, ay = pts[:, 0], pts[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    P = px.reshape(-1, 1)
    Q = py.reshape(-1, 1)
    ex, ey = bx - ax, by - ay
    wx, wy = P - ax, Q - ay
    t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    dist = np.sqrt(((wx - t * ex) ** 2 + (wy - t * ey) ** 2).min(axis=1))
    # even-odd rule
    straddle = (ay > Q) != (by > Q)
    with np.errstate(divide="ignore", invalid="ignore"):
        xcross = ax + (Q - ay) * ex / np.where(ey == 0, 1.0, ey)
    inside = (straddle & (P < xcross)).sum(axis=1) % 2 == 1
    return np.where(inside, -dist, dist).reshape(px.shape)


def coverage(obj, x0, y0, x1, y1, ss, band=0.0):
    """Per-pixel fraction of ss x ss subsamples inside the shape (band == 0) or inside
    its outline band of `band` px; array (y1-y0, x1-x0)."""
    offs = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(x0, x1)[:, None] + offs[None, :]).ravel()
    ys = (np.arange(y0, y1)[:, None] + offs[None, :]).ravel()
    gx, gy = np.meshgrid(xs, ys)
    sd = signed_distance(gx, gy, obj)
    hit = (sd < 0) if band <= 0 else ((sd < 0) & (sd > -band))
    h, w = y1 - y0, x1 - x0
    return hit.reshape(h, ss, w, ss).mean(axis=(1, 3))


def background(rng, side):
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) / max(side - 1, 1)
    base = rng.uniform(205, 255, 3)
    style = rng.choice(["flat", "linear", "radial", "blotchy"])
    if style == "flat":
        img = np.broadcast_to(base, (side, side, 3)).copy()
    elif style == "linear":
        other = np.clip(base + rng.uniform(-35, 35, 3), 200, 255)
        a = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        img = base + t[..., None] * (other - base)
    elif style == "radial":
        other = np.clip(base + rng.uniform(-35, 35, 3), 200, 255)
        fx, fy = rng.uniform(0, 1, 2)
        t = np.hypot(xx - fx, yy - fy)
        t = t / max(t.max(), 1e-9)
        img = base + t[..., None] * (other - base)
    else:
        k = int(rng.integers(3, 7))
        grid = base + rng.normal(0, 6, (k, k, 3))
        u = xx * (k - 1)
        v = yy * (k - 1)
        i0 = np.clip(np.floor(u).astype(int), 0, k - 2)
        j0 = np.clip(np.floor(v).astype(int), 0, k - 2)
        fu, fv = (u - i0)[..., None], (v - j0)[..., None]
        img = ((1 - fu) * (1 - fv) * grid[j0, i0] + fu * (1 - fv) * grid[j0, i0 + 1]
               + (1 - fu) * fv * grid[j0 + 1, i0] + fu * fv * grid[j0 + 1, i0 + 1])
    return np.clip(img, 200, 255)


def paint(rng, side, objs):
    img = background(rng, side)
    ss = int(rng.choice([1, 3, 4], p=[0.3, 0.35, 0.35]))  # 1 = aliased edges
    with_outlines = rng.random() < 0.4
    for o in objs:
        rgb = np.clip(np.array(COLOR_RGB[o["color"]]) + rng.integers(-20, 21, 3), 0, 255)
        x0, y0, x1, y1 = extent(o["shape"], o["cx"], o["cy"], o["d"], o["ang"])
        x0, y0 = max(int(math.floor(x0)) - 1, 0), max(int(math.floor(y0)) - 1, 0)
        x1, y1 = min(int(math.ceil(x1)) + 1, side), min(int(math.ceil(y1)) + 1, side)
        cov = coverage(o, x0, y0, x1, y1, ss)[..., None]
        tile = img[y0:y1, x0:x1]
        tile[:] = tile * (1 - cov) + rgb * cov
        if with_outlines and rng.random() < 0.5:
            width = float(rng.uniform(1.0, 2.0))
            grey = rng.uniform(20, 85)
            cov = coverage(o, x0, y0, x1, y1, max(ss, 2), band=width)[..., None]
            tile[:] = tile * (1 - cov) + grey * cov
    sigma = rng.uniform(0, 8) if rng.random() < 0.8 else 0.0
    if sigma > 0:
        img = img + rng.normal(0, sigma, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- texts

def words_of(o):
    return f"a {o['size']} {o['color']} {o['shape']}"


def make_caption(objs):
    return " and ".join(words_of(o) for o in objs)


def make_questions(rng, objs):
    """Every applicable question of the spec table (exists: all yes + as many no)."""
    qs = []
    by_shape = {s: [o for o in objs if o["shape"] == s] for s in SHAPE_WORDS}
    by_color = {c: [o for o in objs if o["color"] == c] for c in COLOR_WORDS}
    pairs = {}
    for o in objs:
        pairs.setdefault((o["color"], o["shape"]), []).append(o)
    for s in SHAPE_WORDS:
        if len(by_shape[s]) == 1:
            qs.append((f"what color is the {s}?", by_shape[s][0]["color"], "color_of_shape"))
    for c in COLOR_WORDS:
        if len(by_color[c]) == 1:
            qs.append((f"what shape is the {c} object?", by_color[c][0]["shape"],
                       "shape_of_color"))
    for (c, s), group in sorted(pairs.items()):
        if len(group) == 1:
            qs.append((f"what size is the {c} {s}?", group[0]["size"], "size_of"))
    qs.append(("how many objects are there?", NUMBERS[len(objs)], "count_all"))
    for s in SHAPE_WORDS:
        qs.append((f"how many {s}s are there?", NUMBERS[len(by_shape[s])], "count_shape"))
    yes = sorted(pairs)
    for c, s in yes:
        qs.append((f"is there a {c} {s}?", "yes", "exists"))
    no = [(c, s) for c in COLOR_WORDS for s in SHAPE_WORDS if (c, s) not in pairs]
    for i in rng.permutation(len(no))[:len(yes)]:
        c, s = no[i]
        qs.append((f"is there a {c} {s}?", "no", "exists"))
    if len(objs) > 1:
        qs.append(("what color is the leftmost object?", objs[0]["color"], "leftmost_color"))
        qs.append(("what shape is the rightmost object?", objs[-1]["shape"], "rightmost_shape"))
    return [{"question": q, "answer": a, "kind": k} for q, a, k in qs]


def make_absent_questions(rng, objs):
    """Addition to v1 (docs/shapes-world-additions.md): one question of each form that singles out an
    object, about one the scene does not have; answer "none"."""
    shapes = {o["shape"] for o in objs}
    colors = {o["color"] for o in objs}
    pairs = {(o["color"], o["shape"]) for o in objs}
    forms = [
        [(f"what color is the {s}?", "none", "absent") for s in SHAPE_WORDS if s not in shapes],
        [(f"what shape is the {c} object?", "none", "absent") for c in COLOR_WORDS if c not in colors],
        [(f"what size is the {c} {s}?", "none", "absent") for c in COLOR_WORDS for s in SHAPE_WORDS
         if (c, s) not in pairs and (c in colors or s in shapes)],
    ]
    return [{"question": q, "answer": a, "kind": k}
            for options in forms if options for q, a, k in [options[int(rng.integers(len(options)))]]]


def make_negatives(rng, objs, k=6):
    truth = make_caption(objs)
    cands = []
    for i, o in enumerate(objs):
        for field, options in (("shape", SHAPE_WORDS), ("color", COLOR_WORDS),
                               ("size", ["small", "large"])):
            for v in options:
                if v != o[field]:
                    changed = [dict(p) for p in objs]
                    changed[i][field] = v
                    cands.append(make_caption(changed))
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            order = list(objs)
            order[i], order[j] = order[j], order[i]
            cands.append(make_caption(order))
    cands = [c for c in dict.fromkeys(cands) if c != truth]
    pick = rng.permutation(len(cands))[:k]
    return [cands[i] for i in sorted(pick)]


# ---------------------------------------------------------------- main

def one_scene(seed, index, size):
    rng = np.random.default_rng([seed, index, 0x5EED])
    if size:
        side = size
    else:
        side = 128 if rng.random() < 0.25 else int(rng.integers(96, 257))
    objs = draw_layout(rng, side, int(rng.integers(1, 5)))
    pixels = paint(rng, side, objs)
    meta = {
        "caption": make_caption(objs),
        "questions": make_questions(rng, objs),
        "negatives": make_negatives(rng, objs),
        "objects": [],
        "width": side,
        "height": side,
    }
    # Its own generator: v1's texts of every scene stay what they were.
    meta["questions"] += make_absent_questions(np.random.default_rng([seed, index, 0xAB5E]), objs)
    for o in objs:
        box = extent(o["shape"], o["cx"], o["cy"], o["d"], o["ang"])
        meta["objects"].append({
            "shape": o["shape"], "color": o["color"], "size": o["size"],
            "center": [round(o["cx"], 1), round(o["cy"], 1)],
            "bbox": [round(float(v), 1) for v in box],
        })
    return pixels, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--count", required=True, type=int)
    ap.add_argument("--seed", required=True, type=int)
    ap.add_argument("--size", type=int, default=None, help="fixed canvas side (default 96-256)")
    args = ap.parse_args(argv)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lines = []
    for i in range(args.count):
        pixels, meta = one_scene(args.seed, i, args.size)
        name = f"images/{i:06d}.png"
        Image.fromarray(pixels, "RGB").save(args.out / name)
        lines.append(json.dumps({"file_name": name, **meta}))
    tmp = args.out / ".metadata.jsonl.tmp"
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, args.out / "metadata.jsonl")
    dt = time.perf_counter() - start
    print(f"wrote {args.count} scenes to {args.out} in {dt:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shapes World v1 (specs/shapes-world.md): scenes, rendering, texts, datasets,
and the independent held-out generator in bench/heldout_world.py."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmstudio.errors import DatasetError  # noqa: E402
from mmstudio.world import (  # noqa: E402
    ABSENT_ANSWER,
    COLORS,
    EXTRA_COLORS,
    EXTRA_SHAPES,
    NUMBER_WORDS,
    QUESTION_KINDS,
    REFERENCE_RGB,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    absent_question,
    all_words,
    caption,
    generate_dataset,
    hard_negatives,
    questions,
    read_metadata,
    render_scene,
    sample_scene,
)

ALL_SHAPES = SHAPES + EXTRA_SHAPES
ALL_COLORS = COLORS + EXTRA_COLORS
# radius of a circle around the center holding the shape at any rotation,
# per unit of "diameter" (circle: diameter, square/triangle: side, star/hexagon: outer)
ENCLOSING = {"circle": 0.5, "square": math.sqrt(0.5), "triangle": 1 / math.sqrt(3),
             "star": 0.5, "hexagon": 0.5}
SIZE_RANGE = {"small": (0.12, 0.16), "large": (0.22, 0.28)}
META_KEYS = {"file_name", "caption", "questions", "negatives", "objects", "width", "height"}
OBJ_KEYS = {"shape", "color", "size", "center", "bbox"}


def _scenes(n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, **kw) for _ in range(n)]


@pytest.fixture(scope="module")
def scenes():
    return _scenes(400, seed=1234)


# ------------------------------------------------------------------ independent truth

def _phrase_re(shapes=ALL_SHAPES, colors=ALL_COLORS):
    return rf"a ({'|'.join(SIZES)}) ({'|'.join(colors)}) ({'|'.join(shapes)})"


def parse_caption(text, shapes=ALL_SHAPES, colors=ALL_COLORS):
    """[(size, color, shape), ...] or None if the text is not caption-shaped."""
    parts = text.split(" and ")
    out = []
    for p in parts:
        m = re.fullmatch(_phrase_re(shapes, colors), p)
        if not m:
            return None
        out.append(m.groups())
    return out


def true_answer(question, objs):
    """Answer recomputed from objects (dicts or SceneObjects) by the test itself."""
    def g(o, k):
        return o[k] if isinstance(o, dict) else getattr(o, k)

    def cx(o):
        return g(o, "center")[0]

    objs = sorted(objs, key=cx)
    if m := re.fullmatch(r"what color is the (\w+)\?", question):
        hits = [o for o in objs if g(o, "shape") == m.group(1)]
        assert len(hits) <= 1, question
        if not hits:  # an absent object (addition to the spec)
            return "none"
        return g(hits[0], "color")
    if question == "what color is the leftmost object?":
        assert len(objs) >= 2
        return g(objs[0], "color")
    if question == "what shape is the rightmost object?":
        assert len(objs) >= 2
        return g(objs[-1], "shape")
    if m := re.fullmatch(r"what shape is the (\w+) object\?", question):
        hits = [o for o in objs if g(o, "color") == m.group(1)]
        assert len(hits) <= 1, question
        if not hits:  # an absent object (addition to the spec)
            return "none"
        return g(hits[0], "shape")
    if m := re.fullmatch(r"what size is the (\w+) (\w+)\?", question):
        hits = [o for o in objs if (g(o, "color"), g(o, "shape")) == m.groups()]
        assert len(hits) <= 1, question
        if not hits:  # an absent object (addition to the spec)
            return "none"
        return g(hits[0], "size")
    if question == "how many objects are there?":
        return NUMBER_WORDS[len(objs)]
    if m := re.fullmatch(r"how many (\w+)s are there\?", question):
        return NUMBER_WORDS[sum(g(o, "shape") == m.group(1) for o in objs)]
    if m := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
        hit = any((g(o, "color"), g(o, "shape")) == m.groups() for o in objs)
        return "yes" if hit else "no"
    raise AssertionError(f"question not in the spec table: {question!r}")


KIND_RE = {
    "color_of_shape": r"what color is the (?!leftmost|rightmost)\w+\?",
    "shape_of_color": r"what shape is the (?!rightmost)\w+ object\?",
    "size_of": r"what size is the \w+ \w+\?",
    "count_all": r"how many objects are there\?",
    "count_shape": r"how many \w+s are there\?",
    "exists": r"is there a \w+ \w+\?",
    "leftmost_color": r"what color is the leftmost object\?",
    "rightmost_shape": r"what shape is the rightmost object\?",
    "absent": r"what (color is the (?!leftmost|rightmost)\w+|shape is the (?!rightmost)\w+ object"
              r"|size is the \w+ \w+)\?",
}


def negative_kind(neg, cap):
    """'shape' / 'color' / 'size' / 'swap' when neg is a valid hard negative of cap."""
    a, b = parse_caption(cap), parse_caption(neg)
    assert a is not None and b is not None and len(a) == len(b), (cap, neg)
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) == 1:
        fields = [f for f in range(3) if a[diff[0]][f] != b[diff[0]][f]]
        assert len(fields) == 1, (cap, neg)
        return ("size", "color", "shape")[fields[0]]
    assert len(diff) == 2, (cap, neg)
    i, j = diff
    assert a[i] == b[j] and a[j] == b[i], (cap, neg)
    return "swap"


# ------------------------------------------------------------------ vocab

def test_vocab_constants():
    assert SHAPES == ("circle", "square", "triangle", "star")
    assert COLORS == ("red", "green", "blue", "yellow", "purple", "orange")
    assert SIZES == ("small", "large")
    assert REFERENCE_RGB["purple"] == (140, 60, 190)
    assert REFERENCE_RGB["pink"] == (240, 120, 190)
    assert set(QUESTION_KINDS) == set(KIND_RE)
    # pink stays apart from its neighbours even with +-20 jitter on both sides
    for c in ("red", "purple", "orange"):
        gap = max(abs(p - q) for p, q in zip(REFERENCE_RGB["pink"], REFERENCE_RGB[c]))
        assert gap > 40, c
    words = all_words()
    assert words == sorted(set(words)) and "circles" in words and "?" not in words
    assert all(re.fullmatch(r"[a-z]+", w) for w in words)
    assert "hexagons" in all_words(ALL_SHAPES, ALL_COLORS) and "pink" in all_words(
        ALL_SHAPES, ALL_COLORS)
    assert "hexagon" not in words


# ------------------------------------------------------------------ scenes

def test_scene_constraints(scenes):
    counts, sides, sizes = Counter(), Counter(), Counter()
    for sc in scenes:
        side = sc.width
        assert sc.width == sc.height and 96 <= side <= 256
        sides[side == 128] += 1
        objs = sc.objects
        counts[len(objs)] += 1
        assert [o.center[0] for o in objs] == sorted(o.center[0] for o in objs)
        for o in objs:
            sizes[o.size] += 1
            lo, hi = SIZE_RANGE[o.size]
            assert lo * side <= o.diameter <= hi * side
            x0, y0, x1, y1 = o.bbox
            assert 0 <= x0 < o.center[0] < x1 <= side and 0 <= y0 < o.center[1] < y1 <= side
            assert x0 <= o.center[0] - o.diameter * 0.3 and x1 >= o.center[0] + 0.3 * o.diameter
            if o.shape == "circle":
                assert o.rotation == 0
            assert abs(o.rotation) <= 25
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                a, b = objs[i], objs[j]
                d = math.dist(a.center, b.center)
                assert d > ENCLOSING[a.shape] * a.diameter + ENCLOSING[b.shape] * b.diameter
                # x centers at least 4 % apart, even after rounding to 0.1 px
                assert abs(round(a.center[0], 1) - round(b.center[0], 1)) >= 0.04 * side
        assert len(sc.style.object_rgb) == len(objs) == len(sc.style.outline_px)
        for o, rgb in zip(objs, sc.style.object_rgb):
            assert all(abs(p - q) <= 20 for p, q in zip(rgb, REFERENCE_RGB[o.color]))
        assert 0 <= sc.style.noise_sigma <= 8
        assert all(200 <= v <= 255 for v in sc.style.bg_rgb + sc.style.bg_rgb2)
    assert set(counts) == {1, 2, 3, 4}
    assert min(counts.values()) > len(scenes) / 8
    assert sides[True] > len(scenes) * 0.15 and sides[False] > len(scenes) * 0.5
    assert sizes["small"] > 0.35 * sum(sizes.values()) < sizes["large"]


def test_sample_scene_arguments():
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 4):
        sc = sample_scene(rng, size=96, n_objects=n)
        assert sc.width == 96 and len(sc.objects) == n
    sc = sample_scene(rng, shapes=("star",), colors=("pink",), size=200)
    assert {o.shape for o in sc.objects} == {"star"} and {o.color for o in sc.objects} == {"pink"}
    with pytest.raises(ValueError):
        sample_scene(rng, n_objects=5)


# ------------------------------------------------------------------ rendering

def _median_patch(arr, x, y, r=1):
    xi, yi = int(x), int(y)
    patch = arr[yi - r:yi + r + 1, xi - r:xi + r + 1].reshape(-1, 3)
    return np.median(patch, axis=0)


def test_render_colors_and_background(scenes):
    hidden_corners = 0
    for sc in scenes[:250]:
        img = render_scene(sc)
        assert img.mode == "RGB" and img.size == (sc.width, sc.height)
        arr = np.asarray(img).astype(int)
        for o, rgb in zip(sc.objects, sc.style.object_rgb):
            med = _median_patch(arr, *o.center)
            assert np.all(np.abs(med - REFERENCE_RGB[o.color]) <= 45), (o, med)
            assert np.all(np.abs(med - rgb) <= 25), (o, med, rgb)
        s = sc.width
        tol = 4 * sc.style.noise_sigma + 1
        for cx, cy in ((0, 0), (s - 4, 0), (0, s - 4), (s - 4, s - 4)):
            if any(o.bbox[0] < cx + 4 and o.bbox[2] > cx and o.bbox[1] < cy + 4
                   and o.bbox[3] > cy for o in sc.objects):
                hidden_corners += 1
                continue
            patch = arr[cy:cy + 4, cx:cx + 4]
            assert patch.min() >= 200 - tol and np.median(patch) >= 200
    assert hidden_corners < 250


def test_render_bbox_is_tight(scenes):
    """With noise off and a flat background the drawn pixels fill exactly the bbox."""
    for sc in scenes[:120]:
        style = dataclasses.replace(sc.style, bg_mode="uniform", noise_sigma=0.0)
        arr = np.asarray(render_scene(dataclasses.replace(sc, style=style))).astype(int)
        ink = np.abs(arr - np.array(style.bg_rgb)).max(axis=2) > 8
        ys, xs = np.nonzero(ink)
        owner = np.full(len(xs), -1)
        for k, o in enumerate(sc.objects):
            r = ENCLOSING[o.shape] * o.diameter + 1.5
            near = np.hypot(xs + 0.5 - o.center[0], ys + 0.5 - o.center[1]) <= r
            owner[near] = k
        assert np.all(owner >= 0), "ink outside every object"
        for k, o in enumerate(sc.objects):
            x0, y0, x1, y1 = o.bbox
            px, py = xs[owner == k], ys[owner == k]
            # a partly covered pixel counts whole: up to 1 px (+ Pillow's 1/8 px) outside
            assert px.min() >= x0 - 1.25 and px.max() + 1 <= x1 + 1.25
            assert py.min() >= y0 - 1.25 and py.max() + 1 <= y1 + 1.25
            # and the ink reaches the box (aliased star tips may lose a sliver)
            assert px.min() <= x0 + 2 and px.max() + 1 >= x1 - 2, (o, px.min(), px.max())
            assert py.min() <= y0 + 2 and py.max() + 1 >= y1 - 2, (o, py.min(), py.max())


def test_render_is_deterministic(scenes):
    for sc in scenes[:10]:
        assert render_scene(sc).tobytes() == render_scene(sc).tobytes()


def test_rendering_variation_present(scenes):
    styles = [sc.style for sc in scenes]
    assert {s.bg_mode for s in styles} == {"uniform", "gradient", "texture"}
    assert {s.antialias for s in styles} == {True, False}
    assert any(w == 2 for s in styles for w in s.outline_px)
    assert any(w == 1 for s in styles for w in s.outline_px)
    assert max(s.noise_sigma for s in styles) > 6 and min(s.noise_sigma for s in styles) == 0
    rots = [o.rotation for sc in scenes for o in sc.objects if o.shape != "circle"]
    assert min(rots) < -20 and max(rots) > 20


def test_extra_shapes_and_colors():
    scs = _scenes(200, seed=9, shapes=ALL_SHAPES, colors=ALL_COLORS)
    objs = [o for sc in scs for o in sc.objects]
    assert {o.shape for o in objs} == set(ALL_SHAPES)
    assert {o.color for o in objs} == set(ALL_COLORS)
    for sc in scs[:60]:
        arr = np.asarray(render_scene(sc)).astype(int)
        for o in sc.objects:
            assert np.all(np.abs(_median_patch(arr, *o.center) - REFERENCE_RGB[o.color]) <= 45)
        qs = questions(sc, np.random.default_rng(0), shapes=ALL_SHAPES, colors=ALL_COLORS)
        for qa in qs:
            assert qa.answer == true_answer(qa.question, sc.objects)
    words = set(all_words(ALL_SHAPES, ALL_COLORS))
    texts = [qa.question for sc in scs
             for qa in questions(sc, np.random.default_rng(1), shapes=ALL_SHAPES,
                                 colors=ALL_COLORS)]
    assert any("hexagons" in t for t in texts)
    assert all(set(t.rstrip("?").split()) <= words for t in texts)


# ------------------------------------------------------------------ texts

def test_caption_format(scenes):
    for sc in scenes:
        cap = caption(sc)
        parsed = parse_caption(cap, SHAPES, COLORS)
        assert parsed is not None, cap
        assert cap == cap.lower() and cap.strip() == cap
        objs = sorted(sc.objects, key=lambda o: o.center[0])
        assert parsed == [(o.size, o.color, o.shape) for o in objs]
    one = Scene(128, 128, (SceneObject("circle", "red", "small", (40.0, 40.0),
                                       (30.0, 30.0, 50.0, 50.0), 0.0, 20.0),
                           SceneObject("star", "blue", "large", (90.0, 60.0),
                                       (70.0, 40.0, 110.0, 80.0), 0.0, 33.0)), scenes[0].style)
    assert caption(one) == "a small red circle and a large blue star"


def test_questions_are_right_and_cover_every_kind(scenes):
    kinds = Counter()
    answers = Counter()
    for i, sc in enumerate(scenes[:200]):
        qs = questions(sc, np.random.default_rng(i))
        assert qs == questions(sc, np.random.default_rng(i))
        absent = absent_question(sc, np.random.default_rng(i))
        assert absent is not None and absent.answer == "none"  # a scene never holds every shape and color
        qs = [*qs, absent]
        seen = Counter(qa.kind for qa in qs)
        assert seen["count_all"] == 1 and 1 <= seen["count_shape"] <= 2
        assert 1 <= seen["exists"] <= 2 and seen["absent"] == 1
        assert (seen["leftmost_color"] == 1) == (len(sc.objects) >= 2)
        for qa in qs:
            assert qa.question == qa.question.lower() and qa.question.endswith("?")
            assert re.fullmatch(KIND_RE[qa.kind], qa.question), qa
            assert re.fullmatch(r"[a-z]+", qa.answer)
            assert qa.answer == true_answer(qa.question, sc.objects), (caption(sc), qa)
            kinds[qa.kind] += 1
            answers[qa.kind, qa.answer] += 1
    assert set(kinds) == set(QUESTION_KINDS)
    assert answers["exists", "yes"] > 100 and answers["exists", "no"] > 100
    assert answers["count_shape", "zero"] > 50
    assert {a for (k, a) in answers if k == "count_all"} == {"one", "two", "three", "four"}


def test_questions_applicability(scenes):
    """Unique-object kinds are asked whenever some object qualifies."""
    for i, sc in enumerate(scenes[:200]):
        kinds = {qa.kind for qa in questions(sc, np.random.default_rng(i))}
        shapes = Counter(o.shape for o in sc.objects)
        colors = Counter(o.color for o in sc.objects)
        pairs = Counter((o.color, o.shape) for o in sc.objects)
        assert ("color_of_shape" in kinds) == (1 in shapes.values())
        assert ("shape_of_color" in kinds) == (1 in colors.values())
        assert ("size_of" in kinds) == (1 in pairs.values())


_obj = st.tuples(st.sampled_from(SHAPES), st.sampled_from(COLORS), st.sampled_from(SIZES))


@settings(max_examples=150, deadline=None)
@given(st.lists(_obj, min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_texts_on_any_object_mix(attrs, seed):
    objs = tuple(SceneObject(s, c, z, (10.0 + 30 * i, 50.0), (0.0, 40.0, 20.0, 60.0), 0.0, 20.0)
                 for i, (s, c, z) in enumerate(attrs))
    sc = Scene(128, 128, objs, _scenes(1)[0].style)
    rng = np.random.default_rng(seed)
    for qa in questions(sc, rng):
        assert qa.answer == true_answer(qa.question, objs)
    cap = caption(sc)
    negs = hard_negatives(sc, rng)
    assert len(negs) == 6 == len(set(negs)) and cap not in negs
    for n in negs:
        negative_kind(n, cap)


def test_hard_negatives(scenes):
    kinds = Counter()
    for i, sc in enumerate(scenes[:200]):
        cap = caption(sc)
        negs = hard_negatives(sc, np.random.default_rng(i))
        assert len(negs) == 6 and len(set(negs)) == 6 and cap not in negs
        per_scene = {negative_kind(n, cap) for n in negs}
        kinds.update(negative_kind(n, cap) for n in negs)
        if len(set(cap.split(" and "))) > 1:
            assert "swap" in per_scene
        assert {"shape", "color", "size"} <= per_scene
        assert hard_negatives(sc, np.random.default_rng(i), k=3) == hard_negatives(
            sc, np.random.default_rng(i), k=3)
    assert min(kinds.values()) > 50, kinds


def test_all_words_cover_texts():
    words = set(all_words())
    used = set()
    rng = np.random.default_rng(77)
    for sc in _scenes(500, seed=77):
        texts = [caption(sc)] + hard_negatives(sc, rng)
        for qa in [*questions(sc, rng), absent_question(sc, rng)]:
            texts += [qa.question, qa.answer]
        for t in texts:
            used |= set(t.replace("?", " ").split())
    assert used == words | {ABSENT_ANSWER}, (used - words, words - used)


# ------------------------------------------------------------------ datasets

def test_dataset_files_and_determinism(tmp_path):
    a = generate_dataset(tmp_path / "a", 12, seed=3)
    b = generate_dataset(tmp_path / "b", 20, seed=3)
    c = generate_dataset(tmp_path / "c", 12, seed=3)
    d = generate_dataset(tmp_path / "d", 12, seed=4)
    la = (a / "metadata.jsonl").read_text().splitlines()
    lb = (b / "metadata.jsonl").read_text().splitlines()
    assert len(la) == 12 and len(lb) == 20 and la == lb[:12]
    assert (a / "metadata.jsonl").read_bytes() == (c / "metadata.jsonl").read_bytes()
    assert (a / "metadata.jsonl").read_bytes() != (d / "metadata.jsonl").read_bytes()
    for i in range(12):
        name = f"images/{i:06d}.png"
        assert (a / name).read_bytes() == (b / name).read_bytes() == (c / name).read_bytes()
    assert not list(a.glob(".*")) and not list((a / "images").glob(".*"))

    rows = read_metadata(a)
    assert len(rows) == 12
    from PIL import Image

    for i, row in enumerate(rows):
        assert set(row) == META_KEYS
        assert row["file_name"] == f"images/{i:06d}.png"
        with Image.open(a / row["file_name"]) as im:
            assert im.mode == "RGB" and im.size == (row["width"], row["height"])
        assert parse_caption(row["caption"], SHAPES, COLORS)
        for q in row["questions"]:
            assert set(q) == {"question", "answer", "kind"}
            assert q["answer"] == true_answer(q["question"], row["objects"])
        for o in row["objects"]:
            assert set(o) == OBJ_KEYS and len(o["center"]) == 2 and len(o["bbox"]) == 4
            assert all(round(v, 1) == v for v in o["center"] + o["bbox"])
        assert all(negative_kind(n, row["caption"]) for n in row["negatives"])


def test_dataset_workers_match_serial(tmp_path):
    a = generate_dataset(tmp_path / "a", 6, seed=11, size=96)
    b = generate_dataset(tmp_path / "b", 6, seed=11, size=96, workers=2)
    assert (a / "metadata.jsonl").read_bytes() == (b / "metadata.jsonl").read_bytes()
    for i in range(6):
        name = f"images/{i:06d}.png"
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert all(r["width"] == 96 for r in read_metadata(a))


def test_dataset_extra_vocab(tmp_path):
    out = generate_dataset(tmp_path / "x", 30, seed=2, shapes=("hexagon", "circle"),
                           colors=("pink", "blue"))
    rows = read_metadata(out)
    shapes = {o["shape"] for r in rows for o in r["objects"]}
    assert shapes == {"hexagon", "circle"}
    assert any(q["question"] == "how many hexagons are there?" for r in rows
               for q in r["questions"])


def test_read_metadata_errors(tmp_path):
    with pytest.raises(DatasetError):
        read_metadata(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "images/0.png"}\nnot json\n[1]\n')
    with pytest.raises(DatasetError) as info:
        read_metadata(tmp_path)
    assert len(info.value.problems) == 2 and "metadata.jsonl:2" in info.value.problems[0]


# ------------------------------------------------------------------ held-out generator

HELDOUT = ROOT / "bench" / "heldout_world.py"


def test_heldout_is_independent():
    src = HELDOUT.read_text()
    assert not re.search(r"^\s*(from|import)\s+mmstudio", src, re.M)
    assert "ImageDraw" not in src


def test_heldout_generator(tmp_path):
    out = tmp_path / "held"
    res = subprocess.run([sys.executable, str(HELDOUT), "--out", str(out), "--count", "20",
                          "--seed", "5"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = (out / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 20
    from PIL import Image

    kinds = set()
    for i, line in enumerate(lines):
        row = json.loads(line)
        assert set(row) == META_KEYS and row["file_name"] == f"images/{i:06d}.png"
        assert 96 <= row["width"] == row["height"] <= 256
        with Image.open(out / row["file_name"]) as im:
            assert im.mode == "RGB" and im.size == (row["width"], row["height"])
            arr = np.asarray(im).astype(int)
        objs = row["objects"]
        assert 1 <= len(objs) <= 4 and all(set(o) == OBJ_KEYS for o in objs)
        parsed = parse_caption(row["caption"], SHAPES, COLORS)
        assert parsed == [(o["size"], o["color"], o["shape"])
                          for o in sorted(objs, key=lambda o: o["center"][0])]
        for o in objs:
            x0, y0, x1, y1 = o["bbox"]
            assert 0 <= x0 < o["center"][0] < x1 <= row["width"]
            med = _median_patch(arr, *o["center"])
            assert np.all(np.abs(med - REFERENCE_RGB[o["color"]]) <= 45)
        for q in row["questions"]:
            assert q["answer"] == true_answer(q["question"], objs)
            assert re.fullmatch(KIND_RE[q["kind"]], q["question"])
            kinds.add(q["kind"])
        assert row["caption"] not in row["negatives"]
        for n in row["negatives"]:
            negative_kind(n, row["caption"])
    assert {"count_all", "count_shape", "exists"} <= kinds

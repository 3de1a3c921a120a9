"""Canonical texts about a scene: caption, questions with answers, hard negatives.

All answers are computed from the scene's objects, never from the image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmstudio.world.scene import Scene, SceneObject
from mmstudio.world.vocab import ABSENT_ANSWER, COLORS, NUMBER_WORDS, SHAPES, SIZES, plural


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str


# The forms of the questions `questions` writes, one per kind ({shape}, {shapes}, {color} stand for words of the
# world): what a model trained on the world's data can answer, and all it can (tests check they stay in step).
QUESTION_FORMS: tuple[str, ...] = (
    "what color is the {shape}?",
    "what shape is the {color} object?",
    "what size is the {color} {shape}?",
    "how many objects are there?",
    "how many {shapes} are there?",
    "is there a {color} {shape}?",
    "what color is the leftmost object?",
    "what shape is the rightmost object?",
)
# What the chat model is asked for a caption (training/chat_model.py), beside the questions above.
DESCRIBE = "Describe this image."
# The form of a caption and of a partial description (docs/shapes-world-additions.md: size or colour may be left
# out): every text a retrieval model was trained to score.
CAPTION_FORM = "a {size} {color} {shape} and a {color} {shape} and a {size} {shape}"


def phrase(obj: SceneObject) -> str:
    return f"a {obj.size} {obj.color} {obj.shape}"


def _ordered(scene: Scene) -> list[SceneObject]:
    # Scenes are stored left to right already; sort anyway so hand-made scenes work.
    return sorted(scene.objects, key=lambda o: o.center[0])


def caption(scene: Scene) -> str:
    """Objects left to right, `a {size} {color} {shape}`, joined by ` and `."""
    return " and ".join(phrase(o) for o in _ordered(scene))


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _vocab(values: Sequence[str], present: Sequence[str]) -> list[str]:
    """The given vocabulary plus any word the scene uses that it lacks, in a fixed order."""
    out = list(dict.fromkeys(values))
    out += [v for v in dict.fromkeys(present) if v not in out]
    return out


def questions(scene: Scene, rng: np.random.Generator, *, shapes: Sequence[str] = SHAPES,
              colors: Sequence[str] = COLORS) -> list[QA]:
    """One question per applicable kind (two for count_shape and exists).

    - color_of_shape / shape_of_color / size_of: about a random object that is
      unique by shape / by color / by (color, shape);
    - count_all: always;
    - count_shape: one present shape, and one absent shape ("zero") if any;
    - exists: one "yes" (an existing object) and one "no": mostly a hard no
      (an existing shape in a color no object of that shape has, or an existing
      color on a shape it is not on), sometimes any absent combination;
    - leftmost_color / rightmost_shape: when there are two or more objects.
    `shapes` / `colors` are the vocabulary for absent shapes and "no" questions.
    """
    objs = _ordered(scene)
    shapes = _vocab(shapes, [o.shape for o in objs])
    colors = _vocab(colors, [o.color for o in objs])
    shape_count = Counter(o.shape for o in objs)
    color_count = Counter(o.color for o in objs)
    pair_count = Counter((o.color, o.shape) for o in objs)
    out: list[QA] = []

    unique_shape = [o for o in objs if shape_count[o.shape] == 1]
    if unique_shape:
        o = _pick(rng, unique_shape)
        out.append(QA(f"what color is the {o.shape}?", o.color, "color_of_shape"))
    unique_color = [o for o in objs if color_count[o.color] == 1]
    if unique_color:
        o = _pick(rng, unique_color)
        out.append(QA(f"what shape is the {o.color} object?", o.shape, "shape_of_color"))
    unique_pair = [o for o in objs if pair_count[(o.color, o.shape)] == 1]
    if unique_pair:
        o = _pick(rng, unique_pair)
        out.append(QA(f"what size is the {o.color} {o.shape}?", o.size, "size_of"))

    out.append(QA("how many objects are there?", NUMBER_WORDS[len(objs)], "count_all"))

    present = sorted(shape_count, key=shapes.index)
    s = _pick(rng, present)
    out.append(QA(f"how many {plural(s)} are there?", NUMBER_WORDS[shape_count[s]],
                  "count_shape"))
    absent = [s for s in shapes if s not in shape_count]
    if absent:
        s = _pick(rng, absent)
        out.append(QA(f"how many {plural(s)} are there?", "zero", "count_shape"))

    o = _pick(rng, objs)
    out.append(QA(f"is there a {o.color} {o.shape}?", "yes", "exists"))
    no = _exists_no(rng, objs, shapes, colors, pair_count)
    if no is not None:
        out.append(QA(f"is there a {no[0]} {no[1]}?", "no", "exists"))

    if len(objs) >= 2:
        out.append(QA("what color is the leftmost object?", objs[0].color, "leftmost_color"))
        out.append(QA("what shape is the rightmost object?", objs[-1].shape,
                      "rightmost_shape"))
    return out


def absent_question(scene: Scene, rng: np.random.Generator, *, shapes: Sequence[str] = SHAPES,
                    colors: Sequence[str] = COLORS) -> QA | None:
    """A question about an object the scene does not have, answered "none" (an addition to the spec).

    One of the three forms that single out an object: the color of an absent shape, the shape of an
    absent color, the size of an absent (color, shape), the last mostly a near miss (a color or a shape
    the scene has). None when the scene leaves no absent object to ask about.
    """
    objs = _ordered(scene)
    shapes = _vocab(shapes, [o.shape for o in objs])
    colors = _vocab(colors, [o.color for o in objs])
    present_shapes, present_colors = {o.shape for o in objs}, {o.color for o in objs}
    pairs = {(o.color, o.shape) for o in objs}
    forms = [
        [f"what color is the {s}?" for s in shapes if s not in present_shapes],
        [f"what shape is the {c} object?" for c in colors if c not in present_colors],
        [f"what size is the {c} {s}?" for s in shapes for c in colors
         if (c, s) not in pairs and (s in present_shapes or c in present_colors)],
    ]
    forms = [questions for questions in forms if questions]
    if not forms:
        return None
    return QA(_pick(rng, _pick(rng, forms)), ABSENT_ANSWER, "absent")


def _exists_no(rng, objs, shapes, colors, pair_count):
    """(color, shape) of no object, preferring hard negatives."""
    absent = [(c, s) for s in shapes for c in colors if (c, s) not in pair_count]
    if not absent:
        return None
    scene_shapes = {o.shape for o in objs}
    scene_colors = {o.color for o in objs}
    hard_shape = [p for p in absent if p[1] in scene_shapes]   # existing shape, other color
    hard_color = [p for p in absent if p[0] in scene_colors]   # existing color, other shape
    u = rng.random()
    if u < 0.6 and hard_shape:
        return _pick(rng, hard_shape)
    if u < 0.8 and hard_color:
        return _pick(rng, hard_color)
    return _pick(rng, absent)


def hard_negatives(scene: Scene, rng: np.random.Generator, k: int = 6, *,
                   shapes: Sequence[str] = SHAPES,
                   colors: Sequence[str] = COLORS) -> list[str]:
    """Up to k distinct captions that do not match the scene.

    Each is the caption with one attribute (shape, color or size) of one object
    changed, or (two or more objects) with two different phrases swapped. Kinds are
    taken round robin in a random order so all of them show up.
    """
    objs = _ordered(scene)
    shapes = _vocab(shapes, [o.shape for o in objs])
    colors = _vocab(colors, [o.color for o in objs])
    phrases = [phrase(o) for o in objs]
    truth = " and ".join(phrases)

    def with_phrase(i: int, text: str) -> str:
        return " and ".join(phrases[:i] + [text] + phrases[i + 1:])

    pools: dict[str, list[str]] = {"shape": [], "color": [], "size": [], "swap": []}
    for i, o in enumerate(objs):
        pools["shape"] += [with_phrase(i, f"a {o.size} {o.color} {s}")
                           for s in shapes if s != o.shape]
        pools["color"] += [with_phrase(i, f"a {o.size} {c} {o.shape}")
                           for c in colors if c != o.color]
        pools["size"] += [with_phrase(i, f"a {z} {o.color} {o.shape}")
                          for z in SIZES if z != o.size]
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            if phrases[i] != phrases[j]:
                swapped = list(phrases)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                pools["swap"].append(" and ".join(swapped))
    for pool in pools.values():
        rng.shuffle(pool)
    kinds = [kd for kd in pools if pools[kd]]
    kinds = [kinds[int(i)] for i in rng.permutation(len(kinds))]
    out: list[str] = []
    seen = {truth}
    while len(out) < k and any(pools[kd] for kd in kinds):
        for kd in kinds:
            while pools[kd]:
                text = pools[kd].pop()
                if text not in seen:
                    seen.add(text)
                    out.append(text)
                    break
            if len(out) >= k:
                break
    return out

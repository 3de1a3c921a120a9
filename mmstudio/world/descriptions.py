"""Partial descriptions: true statements about some of a scene's objects, and near misses.

A search query or a Match text rarely names every object. A description is true of a
scene when its phrases name objects of the scene in left-to-right order (not
necessarily neighbours); each phrase is `a {size} {color} {shape}`, or the same with
the size or the colour left out (`a red circle`, `a large star`). The canonical
caption is the description that names every object in full.

Objects are scene objects or metadata rows' object dicts: anything with a shape,
color, size and center.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmstudio.world.vocab import COLORS, SHAPES, SIZES

FORMS = ("full", "no_size", "no_color")


@dataclass(frozen=True)
class Phrase:
    shape: str
    color: str | None = None  # None: not said
    size: str | None = None

    def text(self) -> str:
        return " ".join(w for w in ("a", self.size, self.color, self.shape) if w)

    def fits(self, attributes: tuple[str, str, str]) -> bool:
        """Whether it names an object of these (shape, color, size)."""
        shape, color, size = attributes
        return shape == self.shape and self.color in (None, color) and self.size in (None, size)


def _get(obj, key: str):
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def _x(obj) -> float:
    if isinstance(obj, dict) and "center" not in obj:  # a dataset row may give the box alone
        return (obj["bbox"][0] + obj["bbox"][2]) / 2
    return _get(obj, "center")[0]


def left_to_right(objects: Sequence) -> list:
    return sorted(objects, key=_x)


@functools.lru_cache(maxsize=4096)  # training asks about the same texts once per image of a batch
def parse(text: str) -> tuple[Phrase, ...] | None:
    """The phrases of a description, or None when it is not one (any other wording)."""
    phrases = []
    for part in text.strip().lower().split(" and "):
        words = part.split()
        if len(words) < 2 or words[0] != "a" or len(words) > 4:
            return None
        middle, shape = words[1:-1], words[-1]
        size = middle.pop(0) if middle and middle[0] in SIZES else None
        color = middle.pop(0) if middle else None
        if middle or (color is not None and color in SIZES) or shape in SIZES:
            return None
        phrases.append(Phrase(shape, color, size))
    return tuple(phrases)


def describes(objects: Sequence, text: str) -> bool:
    """Whether the description is true of a scene with these objects."""
    return _true_of(_attributes(objects), text)


def truth_table(scenes: Sequence[Sequence], texts: Sequence[str]) -> list[list[bool]]:
    """describes(objects, text) for every scene (rows) and text (columns), each scene's objects ordered once:
    a retrieval training batch asks it 12,000 times."""
    return [[_true_of(attributes, text) for text in texts] for attributes in map(_attributes, scenes)]


def _attributes(objects: Sequence) -> list[tuple[str, str, str]]:
    return [(_get(o, "shape"), _get(o, "color"), _get(o, "size")) for o in left_to_right(objects)]


def _true_of(attributes: list[tuple[str, str, str]], text: str) -> bool:
    phrases = parse(text)
    return bool(phrases) and _names_in_order(attributes, phrases)


def _names_in_order(attributes: list[tuple[str, str, str]], phrases: tuple[Phrase, ...]) -> bool:
    # Earliest-fit matching finds an in-order assignment whenever one exists.
    position = 0
    for p in phrases:
        while position < len(attributes) and not p.fits(attributes[position]):
            position += 1
        if position == len(attributes):
            return False
        position += 1
    return True


def phrase_of(obj, form: str) -> Phrase:
    return Phrase(_get(obj, "shape"), None if form == "no_color" else _get(obj, "color"),
                  None if form == "no_size" else _get(obj, "size"))


def partial_description(objects: Sequence, rng: np.random.Generator, form: str | None = None) -> str:
    """A true description of a random non-empty subset of the objects, in one form of FORMS."""
    ordered = left_to_right(objects)
    count = int(rng.integers(1, len(ordered) + 1))
    chosen = sorted(rng.choice(len(ordered), size=count, replace=False).tolist())
    form = form or FORMS[int(rng.integers(len(FORMS)))]
    return " and ".join(phrase_of(ordered[i], form).text() for i in chosen)


def false_descriptions(objects: Sequence, text: str, rng: np.random.Generator, k: int = 2, *,
                       shapes: Sequence[str] = SHAPES, colors: Sequence[str] = COLORS) -> list[str]:
    """Up to k distinct near misses of a true description: one attribute changed, or two phrases swapped.

    Every one is checked false of the scene: changing red to blue is no miss where the scene also has
    the blue one. Each pick first draws a kind (shape, color, size, order), so the few reorderings are
    not drowned by the many attribute changes.
    """
    phrases = list(parse(text) or ())
    shapes = list(dict.fromkeys([*shapes, *(_get(o, "shape") for o in objects)]))
    colors = list(dict.fromkeys([*colors, *(_get(o, "color") for o in objects)]))
    pools: dict[str, list[list[Phrase]]] = {"shape": [], "color": [], "size": [], "order": []}
    for i, p in enumerate(phrases):
        def at(new: Phrase, i=i) -> list[Phrase]:
            return phrases[:i] + [new] + phrases[i + 1:]
        pools["shape"] += [at(Phrase(s, p.color, p.size)) for s in shapes if s != p.shape]
        if p.color:
            pools["color"] += [at(Phrase(p.shape, c, p.size)) for c in colors if c != p.color]
        if p.size:
            pools["size"] += [at(Phrase(p.shape, p.color, z)) for z in SIZES if z != p.size]
    for i in range(len(phrases)):
        for j in range(i + 1, len(phrases)):
            swapped = list(phrases)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            pools["order"].append(swapped)
    attributes = _attributes(objects)
    misses = {kind: [t for t in dict.fromkeys(" and ".join(p.text() for p in c) for c in pool)
                     if not _true_of(attributes, t)] for kind, pool in pools.items()}
    out: list[str] = []
    while len(out) < k:
        kinds = [kind for kind, pool in misses.items() if pool]
        if not kinds:
            break
        pool = misses[kinds[int(rng.integers(len(kinds)))]]
        out.append(pool.pop(int(rng.integers(len(pool)))))
    return out

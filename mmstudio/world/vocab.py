"""Words of Shapes World v1 (docs: /work/shared/specs/shapes-world.md).

The spec vocabulary plus a few extra concepts (hexagon, pink) that are kept out of
the default scenes and used by the fine-tuning demos.
"""

from __future__ import annotations

from collections.abc import Iterable

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES: tuple[str, ...] = ("small", "large")

# Extra concepts, never drawn unless asked for.
EXTRA_SHAPES: tuple[str, ...] = ("hexagon",)
EXTRA_COLORS: tuple[str, ...] = ("pink",)

REFERENCE_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 90, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 130, 20),
    # extra: far from red / purple / orange even under +-20 jitter per channel
    "pink": (240, 120, 190),
}

# Diameter ranges as fractions of the canvas side.
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.12, 0.16),
    "large": (0.22, 0.28),
}

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")

# The answer to a question about an object the scene does not have (an addition to the spec,
# docs/shapes-world-additions.md). Not part of all_words: the caption model, trained from scratch on
# those words, stays the one it was; the VQA stage learns "none" as a new word.
ABSENT_ANSWER = "none"

QUESTION_KINDS: tuple[str, ...] = (
    "color_of_shape",
    "shape_of_color",
    "size_of",
    "count_all",
    "count_shape",
    "exists",
    "leftmost_color",
    "rightmost_shape",
    "absent",  # addition: what color / shape / size of an object that is not there -> "none"
)

# Every fixed word of the caption and question templates.
TEMPLATE_WORDS: tuple[str, ...] = (
    "a", "and",  # captions
    "what", "color", "is", "the", "shape", "object", "size",
    "how", "many", "objects", "are", "there", "leftmost", "rightmost",
)
YES_NO: tuple[str, ...] = ("yes", "no")


def plural(shape: str) -> str:
    """Plural of a shape word: add "s" (circles, stars, hexagons)."""
    return shape + "s"


def all_words(shapes: Iterable[str] = SHAPES, colors: Iterable[str] = COLORS) -> list[str]:
    """Every word a caption, question or answer can contain, sorted.

    Punctuation is not a word: questions end with "?" glued to the last word and
    tokenizers split it off.
    """
    shapes = tuple(shapes)
    words = set(TEMPLATE_WORDS) | set(YES_NO) | set(NUMBER_WORDS) | set(SIZES)
    words |= set(shapes) | {plural(s) for s in shapes} | set(colors)
    return sorted(words)

"""The settings of one `mmstudio world generate` run, as a frozen dataclass and a versioned JSON document.

The app's generate dialog starts the subprocess with this document (`--config FILE`), the same way
training jobs are started; the CLI's flags build the same dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mmstudio import documents
from mmstudio import validation as check
from mmstudio.errors import SettingsError
from mmstudio.world.scene import MIN_SIZE
from mmstudio.world.vocab import COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES

MAX_CANVAS = 4096


def canvas_side(value) -> str | None:
    """Why a canvas side cannot be drawn on (None: it can): what sample_scene accepts."""
    if check.positive_int(value) is None and MIN_SIZE // 2 <= value <= MAX_CANVAS:
        return None
    return f"must be from {MIN_SIZE // 2} to {MAX_CANVAS} pixels, got {value!r}"


@dataclass(frozen=True)
class GenerateConfig(documents.Document):
    KIND: ClassVar[str] = "generate"
    VERSION: ClassVar[int] = 1
    UPGRADES: ClassVar[dict] = {}

    out: Path
    count: int
    seed: int = 0
    size: int | None = None  # canvas side in pixels; None: 96-256 at random for each scene
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = COLORS
    workers: int = 1

    def validate(self) -> None:
        """Raise SettingsError naming the first setting generate_dataset could not use."""
        documents.check_fields(self, (("out", check.non_empty_path), ("count", check.positive_int),
                                      ("seed", check.non_negative_int), ("size", check.optional(canvas_side)),
                                      ("workers", check.positive_int)))
        for name, known in (("shapes", SHAPES + EXTRA_SHAPES), ("colors", COLORS + EXTRA_COLORS)):
            chosen = getattr(self, name)
            if not isinstance(chosen, tuple) or not chosen:
                raise SettingsError(name, f"must be a non-empty list of {', '.join(known)}, got {chosen!r}")
            unknown = [w for w in chosen if w not in known]
            if unknown or len(set(chosen)) != len(chosen):
                raise SettingsError(name, f"must name each of {', '.join(known)} at most once, "
                                          f"got {', '.join(map(str, chosen))}")


"""Shapes World v1: generated scenes with ground-truth texts (pure numpy + Pillow).

Spec: docs shared as specs/shapes-world.md. Main entry points:
`sample_scene`, `render_scene`, `caption`, `questions`, `hard_negatives`,
`generate_dataset`, `read_metadata`.
"""

from mmstudio.world.dataset import generate_dataset, read_metadata, scene_record, scene_rng
from mmstudio.world.descriptions import describes, false_descriptions, partial_description
from mmstudio.world.render import render_scene
from mmstudio.world.scene import RenderStyle, Scene, SceneObject, sample_scene
from mmstudio.world.texts import QA, absent_question, caption, hard_negatives, questions
from mmstudio.world.vocab import (
    ABSENT_ANSWER,
    COLORS,
    EXTRA_COLORS,
    EXTRA_SHAPES,
    NUMBER_WORDS,
    QUESTION_KINDS,
    REFERENCE_RGB,
    SHAPES,
    SIZES,
    all_words,
    plural,
)

__all__ = [
    "ABSENT_ANSWER", "absent_question", "describes", "false_descriptions", "partial_description",
    "COLORS", "EXTRA_COLORS", "EXTRA_SHAPES", "NUMBER_WORDS", "QUESTION_KINDS",
    "REFERENCE_RGB", "SHAPES", "SIZES", "QA", "RenderStyle", "Scene", "SceneObject",
    "all_words", "caption", "generate_dataset", "hard_negatives", "plural", "questions",
    "read_metadata", "render_scene", "sample_scene", "scene_record", "scene_rng",
]

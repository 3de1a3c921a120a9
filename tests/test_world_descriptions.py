"""Partial descriptions and absent-object questions (additions to Shapes World v1)."""

from __future__ import annotations

import numpy as np

from mmstudio.world import (
    absent_question,
    caption,
    describes,
    false_descriptions,
    generate_dataset,
    partial_description,
    read_metadata,
    sample_scene,
)
from mmstudio.world.descriptions import parse, truth_table


def _obj(shape, color, size, x):
    return {"shape": shape, "color": color, "size": size, "center": [x, 50.0]}


SCENE = [_obj("star", "blue", "large", 90.0), _obj("circle", "red", "small", 30.0),
         _obj("circle", "red", "large", 60.0)]


def test_describes_reads_subsets_in_order_with_optional_size_and_color():
    assert describes(SCENE, "a small red circle and a large red circle and a large blue star")
    for text in ("a red circle", "a large star", "a small red circle", "a circle and a star",
                 "a red circle and a red circle", "a small circle and a large circle"):
        assert describes(SCENE, text), text
    for text in ("a green circle", "a small star", "a star and a circle",  # wrong attribute / order
                 "a red circle and a red circle and a red circle",  # more than the scene has
                 "a large circle and a small circle", "a photo of a sunset", "", "red circle"):
        assert not describes(SCENE, text), text


def test_parse_refuses_other_wordings():
    assert parse("a small red circle") is not None
    assert parse("a small large circle") is None and parse("a small") is None
    assert parse("the red circle") is None and parse("a very big red circle") is None


def test_partial_descriptions_are_true_and_their_misses_false():
    rng = np.random.default_rng(3)
    kinds_seen = set()
    for _ in range(300):
        scene = sample_scene(rng)
        assert describes(scene.objects, caption(scene))
        text = partial_description(scene.objects, rng)
        assert describes(scene.objects, text), (caption(scene), text)
        misses = false_descriptions(scene.objects, text, rng, k=4)
        assert len(set(misses)) == len(misses) >= 1
        for miss in misses:
            assert not describes(scene.objects, miss), (caption(scene), miss)
            if sorted(miss.split()) == sorted(text.split()):
                kinds_seen.add("order")
    assert "order" in kinds_seen


def test_absent_questions_name_no_object_of_the_scene():
    rng = np.random.default_rng(5)
    forms = set()
    for _ in range(300):
        scene = sample_scene(rng)
        qa = absent_question(scene, rng)
        assert qa.answer == "none" and qa.kind == "absent"
        words = qa.question.rstrip("?").split()
        forms.add(words[1])
        present = {(o.color, o.shape) for o in scene.objects}
        if words[1] == "color":
            assert words[-1] not in {s for _, s in present}
        elif words[1] == "shape":
            assert words[-2] not in {c for c, _ in present}
        else:
            assert (words[-2], words[-1]) not in present
    assert forms == {"color", "shape", "size"}


def test_generated_rows_keep_v1_texts_and_add_one_absent_question(tmp_path):
    rows = read_metadata(generate_dataset(tmp_path / "d", 20, seed=4))
    for row in rows:
        kinds = [q["kind"] for q in row["questions"]]
        assert kinds.count("absent") == 1 and kinds[-1] == "absent"
    # v1's first questions of scene 0, seed 4 (drawn before the addition)
    assert rows[0]["questions"][0]["kind"] != "absent"


def test_truth_table_answers_as_describes_does_pair_by_pair():
    rng = np.random.default_rng(3)
    scenes = [sample_scene(np.random.default_rng(seed)).objects for seed in range(40)]
    texts = [caption(sample_scene(np.random.default_rng(seed))) for seed in range(40)]
    texts += [partial_description(objects, rng) for objects in scenes]
    texts += [miss for objects in scenes[:10] for miss in false_descriptions(objects, texts[0], rng)]
    texts += ["a red circle and", "is this a photo?", ""]
    table = truth_table(scenes, texts)
    assert table == [[describes(objects, text) for text in texts] for objects in scenes]
    assert 0 < sum(map(sum, table)) < len(scenes) * len(texts)

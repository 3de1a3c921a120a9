"""`mmstudio ask`, `match` and `search` say which words the model did not understand, in text and in JSON."""

from __future__ import annotations

import json

import pytest

from mmstudio.cli import main
from mmstudio.models.base import Task

SUNSET = "is this a photo of a sunset?"


@pytest.fixture()
def scene_file(tmp_path, scene_images):
    path = tmp_path / "scene.png"
    scene_images[0].save(path)
    return str(path)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ask_json_names_the_unknown_words_and_answers_nothing(capsys, scene_file):
    code, out, _ = run(capsys, "ask", "--json", scene_file, SUNSET, "how many objects are there?")
    refused, answered = (json.loads(line) for line in out.splitlines())
    assert code == 0
    assert refused["unknown_words"] == ["this", "photo", "of", "sunset"] and refused["answer"] == ""
    assert answered["unknown_words"] == [] and answered["answer"] in {"one", "two", "three", "four"}


def test_ask_text_says_not_understood_and_what_the_built_in_model_knows(capsys, scene_file):
    code, out, _ = run(capsys, "ask", scene_file, SUNSET)
    assert code == 0
    line = out.splitlines()[2]
    assert line.startswith("  not understood: this, photo, of, sunset (the model knows shapes: circle, square")
    assert "sizes: small, large" in line and "“how many objects are there?”" in line and "A:" not in out


def test_a_model_from_elsewhere_lists_only_the_unknown_words(capsys, scene_file, tiny_models):
    code, out, _ = run(capsys, "ask", "--model", str(tiny_models[Task.VQA]), scene_file, SUNSET)
    assert code == 0 and out.splitlines()[2] == "  not understood: this, photo, of, sunset"


def test_a_question_of_a_form_the_model_never_learned_is_answered_with_a_caution(capsys, scene_file, tiny_models):
    """In its words but not of the world's forms ("is there a star?" has no colour): answered, and said to be a
    guess; punctuation and case are no new form. A model from elsewhere says nothing of forms (null)."""
    questions = ("is there a star?", "What COLOR is the Star?!", "how many objects are there?")
    for model in ("builtin:vqa", "builtin:chat"):
        code, out, _ = run(capsys, "ask", "--json", "--model", model, scene_file, *questions)
        rows = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and [r["familiar_question"] for r in rows] == [False, True, True], model
        assert all(r["answer"] for r in rows)
    code, out, _ = run(capsys, "ask", scene_file, "is there a star?")
    assert out.splitlines()[3].startswith("  (not a question of a form the model was trained on: the answer may be a "
                                          "guess; it knows questions like “what color is the circle?”")
    code, out, _ = run(capsys, "ask", "--json", "--model", str(tiny_models[Task.VQA]), scene_file, "is there a star?")
    assert json.loads(out)["familiar_question"] is None


def test_match_marks_each_text_and_says_once_what_the_model_knows(capsys, scene_file):
    code, out, _ = run(capsys, "match", "--json", scene_file, "a photo of a red circle", "a small red circle")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["unknown_words"] for r in rows] == [["photo", "of"], []]
    code, out, _ = run(capsys, "match", scene_file, "a photo of a red circle", "a small red circle")
    lines = out.splitlines()
    assert any(line.endswith("a photo of a red circle  (not understood: photo, of)") for line in lines)
    assert any(line.endswith("  a small red circle") for line in lines)
    assert sum("the model knows" in line for line in lines) == 1 and "texts like" in lines[-1]


def test_zero_shot_labels_carry_the_unknown_words_of_their_texts(capsys, scene_file):
    code, out, _ = run(capsys, "match", "--json", "--labels", "circle,sunset", "--template", "a {}", scene_file)
    rows = {r["label"]: r["unknown_words"] for r in map(json.loads, out.splitlines())}
    assert code == 0 and rows == {"circle": [], "sunset": ["sunset"]}


def test_search_says_which_words_of_the_query_it_ranked_without(capsys, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, out, err = run(capsys, "search", "--index", str(photos), "--top", "2", "--json", "a", "sunset", "circle")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 2 and all(r["unknown_words"] == ["sunset"] for r in rows)
    assert "mmstudio: not understood: sunset (the model knows shapes:" in err

"""Words a model does not know: found by its tokenizer, carried on the results, and no guessed answer for them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mmstudio.engine import Engine
from mmstudio.models.base import Task
from mmstudio.models.words import is_word, unknown_words
from mmstudio.requests import AskRequest, ImageRef, MatchRequest, SearchRequest, execute
from mmstudio.world.texts import CAPTION_FORM, QUESTION_FORMS

SUNSET = "Is this a photo of a sunset?"


@pytest.fixture(scope="module")
def engine():
    """The built-in models, what a user gets: their vocabulary is the ~40 words of Shapes World."""
    engine = Engine()
    yield engine
    engine.unload_all()


@pytest.fixture(scope="module")
def vqa(engine):
    return engine.adapter(Task.VQA)


def test_the_words_the_built_in_tokenizer_does_not_know_are_named_as_typed(vqa):
    found = unknown_words(vqa.tokenizer, [SUNSET, "what color is the circle.", "how many 😀 are there, 😀?",
                                          "Sunset sunset SUNSET", ""])
    assert found[0] == ("this", "photo", "of", "sunset")  # "Is" and "a" are words it has
    assert found[1] == ()  # "." reaches the model as [UNK] too, but punctuation is not a word
    assert found[2] == ("😀",)  # a pictograph is a word; the "," is not
    assert found[3] == ("Sunset", "sunset", "SUNSET")  # as typed: the chat marks each where it stands
    assert found[4] == ()


def test_punctuation_and_symbols_are_not_words():
    assert not any(map(is_word, ["?", ",", "...", "+", "$", "—"]))
    assert all(map(is_word, ["photo", "3", "é", "😀"]))


def test_a_question_with_an_unknown_word_gets_no_answer_and_the_others_are_answered_as_alone(engine, scene_images):
    image = scene_images[0]
    alone = engine.ask(image, ["how many objects are there?"])[0]
    results = engine.ask(image, [SUNSET, "how many objects are there?", "what color is the 😀?"], attention=True)
    refused, answered, emoji = results
    assert [r.question for r in results] == [SUNSET, "how many objects are there?", "what color is the 😀?"]
    # Without the check the built-in model answers "no": a guess about "is a a?".
    assert refused.answer == "" and not refused.understood
    assert refused.unknown_words == ("this", "photo", "of", "sunset")
    assert refused.answer_attention is None and refused.question_attention is None  # nothing was run for it
    assert emoji.unknown_words == ("😀",) and emoji.answer == ""
    assert answered.understood and answered.unknown_words == () and answered.answer == alone.answer
    assert answered.answer in {"zero", "one", "two", "three", "four"} and answered.answer_attention is not None


def test_match_scores_every_text_and_names_its_unknown_words(engine, scene_images):
    results = engine.match(scene_images[0], ["a photo of a red circle", "a small red circle"])
    assert [r.unknown_words for r in results] == [("photo", "of"), ()]
    assert all(0.0 <= r.itm <= 1.0 for r in results)  # scored still: the words are marked, not refused


def test_the_built_in_models_say_what_they_know_and_a_hub_like_model_does_not(engine, tiny_models):
    asked = engine.known_words(Task.VQA)
    assert asked.shapes == ("circle", "square", "triangle", "star") and "red" in asked.colors
    assert asked.sizes == ("small", "large") and asked.extra == ("hexagon", "pink") and asked.other == ()
    assert len(asked.examples) == len(QUESTION_FORMS) and "“how many circles are there?”" in asked.text()
    matched = engine.known_words(Task.ITM)
    # Captions and partial descriptions (size or colour left out) alike.
    assert matched.examples == ("a small red circle and a green square and a large triangle",)
    assert "texts like" in matched.text() and "questions" not in matched.text()
    # No mmstudio.json in the folder: a model from elsewhere lists only the words it did not understand.
    assert engine.known_words(Task.VQA, model=str(tiny_models[Task.VQA])) is None


def test_every_question_and_caption_of_the_world_fits_a_form_the_models_are_said_to_know():
    from mmstudio.world import caption, questions, sample_scene

    def pattern(form: str) -> re.Pattern:
        return re.compile(re.sub(r"\\\{\w+\\\}", "[a-z]+", re.escape(form)))

    forms = [pattern(form) for form in QUESTION_FORMS]
    one_object = pattern(CAPTION_FORM.split(" and ")[0])
    rng = np.random.default_rng(3)
    for _ in range(200):
        scene = sample_scene(rng)
        for qa in questions(scene, rng):
            assert any(form.fullmatch(qa.question) for form in forms), qa.question
        assert all(one_object.fullmatch(part) for part in caption(scene).split(" and "))


def test_requests_carry_the_unknown_words_and_what_the_model_knows(engine, scene_images, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ref = ImageRef(key="scene", pixels=scene_images[0])
    asked = execute(engine, AskRequest(image=ref, question=SUNSET, attention=False))
    assert asked.result.unknown_words and asked.known is not None and asked.known.shapes
    assert execute(engine, AskRequest(image=ref, question="how many objects are there?")).known is None
    matched = execute(engine, MatchRequest(image=ref, texts=("a photo of a star",), attention=False))
    assert matched.results[0].unknown_words == ("photo", "of") and matched.known is not None
    found = execute(engine, SearchRequest(images=(ref,), query="a sunset over a red circle"))
    assert found.unknown_words == ("sunset", "over") and found.known is not None and len(found.hits) == 1


def test_other_families_report_their_unknown_words(family_models, scene_images):
    engine = Engine()
    try:
        # The ViLT test model's BERT vocabulary has "this", "photo" and "of", not "sunset".
        vilt = engine.ask(scene_images[0], [SUNSET, "what color is the star?"], model=str(family_models["vilt"]))
        assert vilt[0].unknown_words == ("sunset",) and vilt[0].answer == ""
        assert vilt[1].understood and vilt[1].answer
        # The CLIP test model's byte-pair vocabulary is the letters a-z and "?": a digit is beyond it.
        clip = engine.match(scene_images[0], ["3 red circles!", "red circles"], model=str(family_models["clip"]))
        assert [r.unknown_words for r in clip] == [("3",), ()]
        assert engine.known_words(Task.ITM, model=str(family_models["clip"])) is None
    finally:
        engine.unload_all()


def test_evaluation_counts_a_question_it_did_not_understand_apart(engine, tmp_path):
    from mmstudio.training.evaluate import evaluate_adapter
    from mmstudio.world import generate_dataset

    folder = generate_dataset(tmp_path / "data", 2, seed=5, size=128)
    metadata = folder / "metadata.jsonl"
    rows = [json.loads(line) for line in metadata.read_text().splitlines()]
    rows[0]["questions"][0]["question"] = "what colour is the circle?"  # British spelling: not a word it has
    metadata.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = evaluate_adapter(engine.adapter(Task.VQA), folder, attention=False)
    total = sum(len(row["questions"]) for row in rows)
    assert report.metrics["not_understood"] == pytest.approx(1 / total)
    failure = next(f for f in report.examples if f["question"] == "what colour is the circle?")
    assert failure["got"] == "" and failure["unknown_words"] == ["colour"]

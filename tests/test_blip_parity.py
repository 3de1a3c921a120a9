"""Our caption, answer and ITM score equal plain transformers on the same checkpoint and input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmstudio.engine import Engine
from mmstudio.models.base import GenerationOptions, LoadOptions, Task

GEN = GenerationOptions(max_new_tokens=12)
# Plain transformers is the reference in fp32 on the CPU; a run with $MMSTUDIO_DTYPE set must not change that.
EXACT = LoadOptions(device="cpu", dtype="fp32")


def plain(cls_name: str, folder):
    import transformers
    from transformers import BlipProcessor

    return BlipProcessor.from_pretrained(folder), getattr(transformers, cls_name).from_pretrained(folder).eval()


@pytest.mark.slow
def test_captions_equal_plain_generate(tiny_models, scene_images):
    processor, model = plain("BlipForConditionalGeneration", tiny_models[Task.CAPTION])
    expected = []
    for image in scene_images:
        inputs = processor(images=image, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=GEN.max_new_tokens, do_sample=False, num_beams=1)
        expected.append(processor.decode(out[0], skip_special_tokens=True))
    assert len(set(expected)) > 1, "the test model must tell images apart"
    engine = Engine(EXACT)
    batched = engine.caption(scene_images, model=str(tiny_models[Task.CAPTION]), batch_size=4, generation=GEN)
    assert [r.caption for r in batched] == expected


@pytest.mark.slow
def test_answers_equal_plain_generate(tiny_models, scene_images):
    processor, model = plain("BlipForQuestionAnswering", tiny_models[Task.VQA])
    questions = ["what color is the circle?", "how many objects are there?", "is there a red star?"]
    engine = Engine(EXACT)
    for image in scene_images[:3]:
        ours = engine.ask(image, questions, model=str(tiny_models[Task.VQA]), generation=GEN)
        for question, result in zip(questions, ours):
            inputs = processor(images=image, text=question, return_tensors="pt")
            out = model.generate(**inputs, max_new_tokens=GEN.max_new_tokens, do_sample=False, num_beams=1)
            assert result.answer == processor.decode(out[0], skip_special_tokens=True)


def test_itm_and_itc_equal_plain_forward(tiny_models, scene_images):
    processor, model = plain("BlipForImageTextRetrieval", tiny_models[Task.ITM])
    texts = ["a small red circle", "a large blue star and a small green square", "a red circle"]
    engine = Engine(EXACT)
    for image in scene_images[:2]:
        ours = engine.match(image, texts, model=str(tiny_models[Task.ITM]))
        for text, result in zip(texts, ours):
            inputs = processor(images=image, text=text, return_tensors="pt")
            with torch.no_grad():
                itm = torch.softmax(model(**inputs).itm_score, dim=-1)[0, 1].item()
                itc = model(**inputs, use_itm_head=False).itm_score[0, 0].item()
            assert result.itm == pytest.approx(itm, abs=1e-5)
            assert result.itc == pytest.approx(itc, abs=1e-5)


@pytest.mark.slow
def test_cached_and_uncached_paths_agree(tiny_models, scene_images):
    engine = Engine(EXACT)
    name = str(tiny_models[Task.CAPTION])
    first = engine.caption(scene_images, model=name, attention=True, generation=GEN)
    adapter = engine.adapter(Task.CAPTION, name)
    assert len(adapter.cache) == len(scene_images)
    hits = adapter.cache.hits
    second = engine.caption(scene_images, model=name, attention=True, generation=GEN)
    assert adapter.cache.hits == hits + len(scene_images)
    adapter.cache.clear()
    third = engine.caption(scene_images, model=name, attention=True, generation=GEN)
    for a, b, c in zip(first, second, third):
        assert a.caption == b.caption == c.caption
        np.testing.assert_array_equal(a.attention.weights, b.attention.weights)
        np.testing.assert_allclose(a.attention.weights, c.attention.weights, atol=1e-6)

    vqa = str(tiny_models[Task.VQA])
    one = engine.ask(scene_images[0], ["what color is the star?"], model=vqa)[0].answer
    again = engine.ask(scene_images[0], ["what color is the star?", "how many stars are there?"], model=vqa)
    assert again[0].answer == one
    itm = str(tiny_models[Task.ITM])
    solo = engine.match(scene_images[1], ["a small red circle"], model=itm)[0]
    many = engine.match(scene_images[1], ["a large blue star", "a small red circle"], model=itm)[1]
    assert solo.itm == pytest.approx(many.itm, abs=1e-5)
    assert solo.itc == pytest.approx(many.itc, abs=1e-5)


@pytest.mark.slow
def test_follow_ups_reuse_the_images_cross_attention_keys(tiny_models, scene_images):
    engine = Engine(EXACT)
    name = str(tiny_models[Task.VQA])
    adapter = engine.adapter(Task.VQA, name)
    assert adapter.cross_memo.installed == 2 * adapter.text_layers
    image = scene_images[0]
    first = engine.ask(image, ["what color is the circle?"], model=name, generation=GEN)[0].answer
    (stored,) = adapter.cross_memo.stored()
    kept = dict(stored)
    assert len(kept) == 2 * adapter.text_layers
    both = engine.ask(image, ["how many objects are there?", "what color is the circle?"], model=name,
                      generation=GEN)
    assert all(stored[slot] is value for slot, value in kept.items())  # not projected again
    assert both[1].answer == first
    adapter.clear_caches()
    assert len(adapter.cross_memo) == 0 and len(adapter.cache) == 0
    assert engine.ask(image, ["how many objects are there?"], model=name, generation=GEN)[0].answer == both[0].answer

    itm = str(tiny_models[Task.ITM])
    texts = ["a small red circle", "a large blue star", "two green squares"]
    once = engine.match(image, texts, model=itm)
    again = engine.match(image, texts[::-1], model=itm)
    assert [r.itm for r in once] == pytest.approx([r.itm for r in again[::-1]], abs=1e-6)
    # More texts than one chunk: they run in chunks of similar length, with the same scores as alone.
    words = ["small red circle", "large blue star", "small green square", "large yellow triangle"]
    many = [" and a ".join(["a " + words[(i + j) % 4] for j in range(1 + i % 4)]) for i in range(21)]
    together = engine.match(image, many, model=itm)
    alone = [engine.match(image, [text], model=itm)[0] for text in many]
    assert [r.itm for r in together] == pytest.approx([r.itm for r in alone], abs=1e-5)
    assert [r.itc for r in together] == pytest.approx([r.itc for r in alone], abs=1e-5)
    assert [r.text for r in together] == many


def test_vision_cache_is_bounded(tiny_models, scene_images):
    from mmstudio.models.blip import BlipAdapter
    from mmstudio.models.loading import resolve

    adapter = BlipAdapter.load(resolve(tiny_models[Task.CAPTION]), EXACT, cache_size=2)
    adapter.caption(scene_images, generation=GEN)
    assert len(adapter.cache) == 2


def test_attention_shapes(tiny_models, scene_images):
    engine = Engine(EXACT)
    caption = engine.caption(scene_images[:2], model=str(tiny_models[Task.CAPTION]), attention=True,
                             generation=GEN)[0]
    stack = caption.attention
    assert stack.weights.shape[0] == len(caption.tokens)
    assert stack.grid == (4, 4)
    maps = stack.maps()
    assert maps.shape == (len(caption.tokens), 4, 4)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert stack.maps(layer=1, head=0).shape == maps.shape
    assert stack.maps(head="max").shape == maps.shape

    answer = engine.ask(scene_images[0], ["what color is the circle?"], model=str(tiny_models[Task.VQA]),
                        attention=True, generation=GEN)[0]
    assert answer.question_tokens == ("what", "color", "is", "the", "circle", "?")
    assert answer.question_attention.maps().shape == (6, 4, 4)
    assert answer.answer_attention.maps().shape == (1, 4, 4)

    match = engine.match(scene_images[0], ["a small red circle"], model=str(tiny_models[Task.ITM]),
                         attention=True)[0]
    assert match.token_attention.tokens == ("a", "small", "red", "circle")
    assert match.attention.maps().shape == (1, 4, 4)
    assert match.token_attention.maps().shape == (4, 4, 4)


def test_unsupported_task_is_a_clear_error(tiny_models):
    from mmstudio.errors import UnsupportedTaskError

    engine = Engine(EXACT)
    with pytest.raises(UnsupportedTaskError, match="caption"):
        engine.adapter(Task.VQA, str(tiny_models[Task.CAPTION]))

"""ViT-GPT2, ViLT and CLIP: our outputs equal plain transformers used the way its documentation shows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmstudio.engine import Engine
from mmstudio.errors import UnsupportedTaskError
from mmstudio.models.base import GenerationOptions, LoadOptions, Task
from mmstudio.models.loading import read_config
from mmstudio.models.registry import factory_for, tasks_of

GEN = GenerationOptions(max_new_tokens=12)
# Plain transformers is the reference in fp32 on the CPU; a run with $MMSTUDIO_DTYPE set must not change that.
EXACT = LoadOptions(device="cpu", dtype="fp32")
QUESTIONS = ["what color is the circle?", "how many objects are there?", "is there a red star?"]
LABELS = ["red circle", "blue square", "a large yellow star", "two green triangles"]


# ---------------------------------------------------------------- registry


def test_each_family_is_picked_from_its_config_and_says_its_tasks(family_models):
    expected = {"vit-gpt2": {Task.CAPTION}, "vilt": {Task.VQA}, "clip": {Task.ITM}, "siglip": {Task.ITM},
                "siglip2": {Task.ITM}, "siglip2-naflex": {Task.ITM}}
    for family, folder in family_models.items():
        config = read_config(folder)
        assert factory_for(config).family == ("siglip" if family.startswith("siglip") else family)
        assert tasks_of(config) == expected[family]


def test_a_family_refuses_the_tasks_it_lacks(family_models):
    engine = Engine(EXACT)
    with pytest.raises(UnsupportedTaskError, match="it does caption"):
        engine.adapter(Task.VQA, str(family_models["vit-gpt2"]))
    with pytest.raises(UnsupportedTaskError, match="it does vqa"):
        engine.adapter(Task.CAPTION, str(family_models["vilt"]))
    with pytest.raises(UnsupportedTaskError, match="it does itm"):
        engine.adapter(Task.CAPTION, str(family_models["clip"]))


# ---------------------------------------------------------------- ViT-GPT2


def test_vit_gpt2_captions_equal_plain_generate(family_models, scene_images):
    from transformers import AutoTokenizer, VisionEncoderDecoderModel, ViTImageProcessor

    folder = family_models["vit-gpt2"]
    model = VisionEncoderDecoderModel.from_pretrained(folder).eval()  # its default attention, not ours
    image_processor = ViTImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = []
    for image in scene_images:
        pixel_values = image_processor(images=image, return_tensors="pt").pixel_values
        output_ids = model.generate(pixel_values, max_new_tokens=GEN.max_new_tokens, do_sample=False, num_beams=1)
        expected.append(tokenizer.batch_decode(output_ids, skip_special_tokens=True)[0].strip())
    assert len(set(expected)) > 1, "the test model must tell images apart"
    ours = Engine(EXACT).caption(scene_images, model=str(folder), batch_size=3, generation=GEN)
    assert [r.caption for r in ours] == expected


def test_vit_gpt2_cross_attention_maps(family_models, scene_images):
    engine = Engine(EXACT)
    name = str(family_models["vit-gpt2"])
    plain, mapped = (engine.caption(scene_images[:2], model=name, attention=a, generation=GEN) for a in (False, True))
    assert [r.caption for r in plain] == [r.caption for r in mapped]
    result = mapped[0]
    assert "".join(result.tokens).replace("␣", "") == result.caption.replace(" ", "")
    stack = result.attention
    assert stack.weights.shape == (len(result.tokens), 2, 2, 4, 4)  # tokens, layers, heads, 4 x 4 patches
    maps = stack.maps()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert not np.allclose(maps[0], maps[1:]), "each token has its own map"
    adapter = engine.adapter(Task.CAPTION, name)
    assert adapter.info.family == "vit-gpt2" and adapter.model.config.decoder._attn_implementation == "eager"


# -------------------------------------------------------------------- ViLT


def test_vilt_answers_equal_plain_forward(family_models, scene_images):
    from transformers import ViltForQuestionAnswering, ViltProcessor

    folder = family_models["vilt"]
    processor = ViltProcessor.from_pretrained(folder)
    model = ViltForQuestionAnswering.from_pretrained(folder).eval()
    engine = Engine(EXACT)
    seen = set()
    for image in scene_images:
        ours = engine.ask(image, QUESTIONS, model=str(folder))
        for question, result in zip(QUESTIONS, ours):
            encoding = processor(image, question, return_tensors="pt")
            with torch.no_grad():
                logits = model(**encoding).logits
            expected = model.config.id2label[logits.argmax(-1).item()]
            assert result.answer == expected
            seen.add(expected)
    assert len(seen) > 1, "the test model must give different answers"


def test_vilt_attention_lands_on_the_patch_grid(family_models, scene_images):
    engine = Engine(EXACT)
    name = str(family_models["vilt"])
    image = scene_images[0]
    adapter = engine.adapter(Task.VQA, name)
    _embeds, _mask, positions, grid = adapter.patches(image)
    pixels = adapter.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    assert grid == (pixels.shape[2] // 16, pixels.shape[3] // 16)
    cells = {tuple(p) for p in positions.tolist()}
    assert cells == {(r, c) for r in range(grid[0]) for c in range(grid[1])}, "every patch, each once"
    result = engine.ask(image, QUESTIONS[:1], model=name, attention=True)[0]
    assert result.answer_attention.weights.shape == (1, 2, 2, *grid)
    assert result.question_tokens == ("what", "color", "is", "the", "circle", "?")
    assert result.question_attention.maps().shape == (6, *grid)
    # Scattered back by position: the map is the [CLS] row of attention, patch by patch.
    out = adapter.model(**adapter.processor(image, QUESTIONS[0], return_tensors="pt"), output_attentions=True)
    cls_to_image = out.attentions[0][0, :, 0, 8 + 1:].detach().sum().item()  # 8 text tokens, then image [CLS]
    assert result.answer_attention.weights[0, 0].sum() == pytest.approx(cls_to_image, rel=1e-4)


def test_vilt_sampled_patches_are_recovered_and_repeatable(family_models, scene_images):
    """With `max_image_length` below the patch count ViLT reads a random subset: maps show only those cells."""
    engine = Engine(EXACT)
    name = str(family_models["vilt"])
    adapter = engine.adapter(Task.VQA, name)
    adapter.model.config.max_image_length = 5
    try:
        first = engine.ask(scene_images[1], QUESTIONS, model=name, attention=True)
        again = engine.ask(scene_images[1], QUESTIONS, model=name, attention=True)
        _e, _m, positions, grid = adapter.patches(scene_images[1])
    finally:
        adapter.model.config.max_image_length = -1
    assert len(positions) == 5
    assert [r.answer for r in first] == [r.answer for r in again]
    weights = first[0].answer_attention.weights[0]  # (L, H, rows, cols)
    read = np.zeros(grid, dtype=bool)
    read[positions[:, 0], positions[:, 1]] = True
    assert np.all(weights[..., ~read] == 0) and np.all(weights[..., read] > 0)


# -------------------------------------------------------------------- CLIP


@pytest.mark.parametrize("family", ["clip", "siglip", "siglip2", "siglip2-naflex"])
def test_label_probabilities_equal_the_zero_shot_pipeline(family_models, scene_images, family):
    """CLIP's softmax over the labels, SigLIP's sigmoid of each: both as the pipeline reports them."""
    from transformers import pipeline

    folder = family_models[family]
    classifier = pipeline("zero-shot-image-classification", model=str(folder))
    template = "This is a photo of {}."
    engine = Engine(EXACT)
    tops = set()
    for image in scene_images:
        expected = {row["label"]: row["score"] for row in classifier(image, candidate_labels=LABELS)}
        ours = engine.match(image, [template.format(label) for label in LABELS], model=str(folder))
        for label, result in zip(LABELS, ours):
            assert result.label_probability == pytest.approx(expected[label], abs=1e-5)
            assert result.itm == result.label_probability
        tops.add(max(expected, key=expected.get))
    assert len(tops) > 1, "the test model must tell images apart"


def test_clip_similarity_equals_plain_forward(family_models, scene_images):
    from transformers import CLIPModel, CLIPProcessor

    folder = family_models["clip"]
    processor = CLIPProcessor.from_pretrained(folder)
    model = CLIPModel.from_pretrained(folder).eval()
    inputs = processor(text=LABELS, images=scene_images[0], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
        cosine = (out.logits_per_image[0] / model.logit_scale.exp()).numpy()
    ours = Engine(EXACT).match(scene_images[0], LABELS, model=str(folder), attention=True)
    np.testing.assert_allclose([r.itc for r in ours], cosine, atol=1e-5)
    adapter = Engine(EXACT).embedder(str(folder))
    np.testing.assert_allclose(adapter.text_features(LABELS) @ adapter.image_features(scene_images[:1])[0], cosine,
                               atol=1e-5)


def test_clip_gradcam_map_per_text(family_models, scene_images):
    results = Engine(EXACT).match(scene_images[2], LABELS, model=str(family_models["clip"]), attention=True)
    stacks = [r.attention for r in results]
    assert all(s.weights.shape == (1, 2, 2, 4, 4) and s.default_layer == 1 for s in stacks)
    assert all(np.all(s.weights >= 0) for s in stacks)
    maps = np.concatenate([s.maps() for s in stacks])
    assert not np.allclose(maps[0], maps[1]), "each text has its own map"


def test_blip_retrieval_gives_label_probabilities(tiny_models, scene_images):
    results = Engine(EXACT).match(scene_images[0], LABELS, model=str(tiny_models[Task.ITM]))
    probs = [r.label_probability for r in results]
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    order = np.argsort([r.itc for r in results])
    assert list(np.argsort(probs)) == list(order), "the softmax keeps the order of the similarities"

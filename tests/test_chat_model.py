"""The built-in chat model's making (a LLaVA from the caption model's ViT) and the model itself."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmstudio.engine import Engine
from mmstudio.imaging import load_image
from mmstudio.models.base import Task
from mmstudio.resources import builtin_models_dir
from mmstudio.training.chat_model import INSTRUCTION, Encoder, build_chat_model, conversations, vision_from_blip
from mmstudio.world import generate_dataset

CAPTION = builtin_models_dir() / "caption"
CHAT = builtin_models_dir() / "chat"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("chat-scenes") / "scenes", 6, seed=2000)


@pytest.fixture(scope="module")
def made():
    return build_chat_model(CAPTION, seed=3)


def test_the_training_ids_are_what_the_chat_template_and_processor_write(made, scenes):
    model, processor = made
    turns = [(INSTRUCTION, "a small red circle"), ("what color is the star?", "none"), ("how many objects are "
                                                                                       "there?", "one")]
    messages = []
    for i, (asked, replied) in enumerate(turns):
        messages.append({"role": "user", "content": ([{"type": "image"}] if i == 0 else [])
                         + [{"type": "text", "text": asked}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": replied}]})
    text = processor.apply_chat_template(messages)
    image = load_image(scenes / "images" / "000000.png")
    written = processor(images=[image], text=[text], return_tensors="pt")["input_ids"][0].tolist()
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    ids, labels = Encoder(processor.tokenizer, side * side)(turns)
    assert ids == written
    # The loss is on the replies and their <end> alone.
    taught = processor.tokenizer.convert_ids_to_tokens([i for i, label in zip(ids, labels) if label != -100])
    assert taught == ["a", "small", "red", "circle", "<end>", "none", "<end>", "one", "<end>"]
    assert "<unk>" not in processor.tokenizer.convert_ids_to_tokens(written)


def test_the_caption_models_vit_moves_into_clips_layout_exactly_but_for_clips_first_norm(made, scenes):
    from transformers import BlipForConditionalGeneration

    model, processor = made
    blip = BlipForConditionalGeneration.from_pretrained(CAPTION, dtype=torch.float32).vision_model.eval()
    tower = model.model.vision_tower.eval()
    vision_from_blip(tower, blip)
    pixels = processor.image_processor([load_image(scenes / "images" / "000001.png")],
                                       return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        theirs = blip(pixels).last_hidden_state
        hidden = tower.embeddings(pixels)  # CLIP's layer norm before the first layer left out: BLIP has none
        for layer in tower.encoder.layers:
            hidden = layer(hidden, None)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        mine = tower.post_layernorm(hidden)
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_conversations_take_the_scenes_questions_and_sometimes_the_caption():
    pools = [[(f"q{i}{j}?", f"a{j}") for j in range(6)] for i in range(200)]
    convos = conversations([f"caption {i}" for i in range(200)], pools, turns=4, caption_share=0.5, seed=1)
    assert all(len(c) == 4 for c in convos)
    first = sum(c[0] == (INSTRUCTION, f"caption {i}") for i, c in enumerate(convos))
    assert 70 < first < 130
    assert all(len(set(c)) == 4 for c in convos)  # no turn twice
    assert conversations(["c"], [pools[0]], turns=4, caption_share=0.5, seed=1) == \
        conversations(["c"], [pools[0]], turns=4, caption_share=0.5, seed=1)


def test_a_chat_models_recorded_layer_is_its_maps_default(tmp_path, scenes):
    folder = tmp_path / "chat"
    shutil.copytree(CHAT, folder)
    record = json.loads((folder / "mmstudio.json").read_text())
    record["attention"] = {"caption_layer": 1, "vqa_layer": "mean"}
    (folder / "mmstudio.json").write_text(json.dumps(record))
    adapter = Engine().adapter(Task.CAPTION, str(folder))
    image = load_image(scenes / "images" / "000002.png")
    assert adapter.caption([image], attention=True)[0].attention.default_layer == 1
    assert adapter.answer(image, ["how many objects are there?"], attention=True)[0] \
        .answer_token_attention.default_layer == "mean"


def test_the_built_in_chat_model_describes_and_answers_the_scenes_with_its_words_on_their_objects(scenes):
    from mmstudio.training.evaluate import evaluate_adapter

    adapter = Engine().adapter(Task.VQA, "builtin:chat")
    assert adapter.info.family == "vlm" and {Task.CAPTION, Task.VQA} <= adapter.info.tasks
    caption = evaluate_adapter(adapter, scenes, attention=True, task=Task.CAPTION)
    answers = evaluate_adapter(adapter, scenes, attention=False, task=Task.VQA)
    # Six scenes: the model card's 1,000 say how often it is right; here, that it is a working chat model.
    assert caption.metrics["exact_match"] >= 4 / 6 and answers.metrics["accuracy"] >= 0.8
    assert caption.metrics["caption_pointing"] >= 0.7
    # A conversation: the second question sees the first turn.
    image = load_image(scenes / "images" / "000000.png")
    first = adapter.answer(image, ["how many objects are there?"])[0].answer
    second = adapter.answer_questions(image, ["what color is the star?"], history=[("how many objects are "
                                                                                     "there?", first)])[0]
    assert second.answer in {"red", "blue", "green", "yellow", "orange", "purple", "none"}


def test_a_long_conversation_reaches_the_chat_model_as_the_latest_turns_it_was_trained_to_hold(scenes, tmp_path):
    from mmstudio.models.hints import read_turn_limit
    from mmstudio.models.vlm import latest_turns

    adapter = Engine().adapter(Task.VQA, "builtin:chat")
    limit = json.loads((CHAT / "mmstudio.json").read_text())["config"]["turns"]
    assert adapter.turn_limit == limit
    turns = [(f"question {i}", f"answer {i}") for i in range(12)]
    assert latest_turns(turns, limit) == turns[-(limit - 1):]  # and the new question makes `limit`
    assert latest_turns(turns[:2], limit) == turns[:2] and latest_turns(turns, 1) == []
    assert latest_turns(turns, None) == turns
    # Earlier turns from another model, more than the chat model ever saw in one conversation: it still
    # answers about the picture.
    image = load_image(scenes / "images" / "000003.png")
    older = [("what color is the circle?", "circle"), ("how many objects are there?", "seven")] * 6
    answer = adapter.answer_questions(image, ["how many objects are there?"], history=older)[0].answer
    assert answer == adapter.answer(image, ["how many objects are there?"])[0].answer
    assert read_turn_limit(tmp_path) is None  # a model we did not train: its whole conversation

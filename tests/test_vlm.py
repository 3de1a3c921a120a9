"""Decoder-only vision-language models: a tiny LLaVA built here, run by mmstudio as plain transformers runs it,
and each generated word's attention on the image's patch grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmstudio.cli import main
from mmstudio.engine import Engine
from mmstudio.models.base import GenerationOptions, Task
from mmstudio.models.vlm import load_processor
from tests.family_checkpoints import (
    build_florence2,
    build_idefics3,
    build_llava,
    build_llava_next,
    build_paligemma,
    build_qwen2_5_vl,
    build_qwen2_vl,
    build_smolvlm,
)


@pytest.fixture(scope="session")
def llava(tmp_path_factory):
    return build_llava(tmp_path_factory.mktemp("vlm") / "llava")


@pytest.fixture(scope="session")
def paligemma(tmp_path_factory):
    return build_paligemma(tmp_path_factory.mktemp("vlm") / "paligemma")


def plain_prompted(folder, image, prompt: str, **generate):
    """What transformers alone replies to a prompted model (PaliGemma): the task prefix after the image."""
    return plain_generate(folder, image, "<image>" + prompt, **generate)


def plain_generate(folder, image, prompt: str, **generate):
    """The processor on the prompt and the image, generate, the new tokens decoded: transformers alone."""
    import torch
    from transformers import AutoModelForImageTextToText

    processor = load_processor(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    inputs.pop("labels", None)
    with torch.inference_mode():
        out = model.generate(**inputs, **generate)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_a_prompted_model_paligemma_captions_answers_and_maps_as_plain_transformers(paligemma, scene_images):
    engine = Engine()
    adapter = engine.adapter(Task.VQA, str(paligemma))
    assert adapter.info.architecture == "PaliGemmaForConditionalGeneration (siglip_vision_model + gemma)"
    for image in scene_images[:2]:
        caption = engine.caption([image], model=str(paligemma))[0].caption
        assert caption == plain_prompted(paligemma, image, "caption en", max_new_tokens=40, do_sample=False)
        answer = engine.ask(image, ["what color is the star ?"], model=str(paligemma))[0].answer
        assert answer == plain_prompted(paligemma, image, "answer en what color is the star ?", max_new_tokens=40,
                                        do_sample=False)
    result = engine.caption(scene_images[:1], model=str(paligemma), attention=True,
                            generation=GenerationOptions(max_new_tokens=4))[0]
    assert result.attention.weights.shape == (len(result.tokens), 2, 2, 4, 4)
    assert np.all(result.attention.weights.sum(axis=(-2, -1)) <= 1 + 1e-5)


@pytest.mark.parametrize("build", [build_idefics3, build_smolvlm], ids=["idefics3", "smolvlm"])
def test_idefics3_tiles_are_laid_side_by_side_each_token_in_its_tile_and_place(build, tmp_path, scene_images):
    import torch
    from PIL import Image

    idefics3 = build(tmp_path / build.__name__)
    engine = Engine()
    adapter = engine.adapter(Task.CAPTION, str(idefics3))
    picture = Image.new("RGB", (64, 40), (90, 140, 210))  # split into 2 x 2 tiles of 32 px, and a global view
    batch = adapter.inputs(picture, [], "describe image .", asking=False)
    ids = batch["input_ids"][0].tolist()
    cells = adapter.image_cells(ids)
    split = adapter.processor.image_processor(images=[[picture]], return_row_col_info=True)
    assert (split["rows"], split["cols"]) == ([[2]], [[2]])  # the tiles the processor reports
    assert cells.shape == (4, 4)  # 2 x 2 tiles of 2 x 2 tokens
    tokens = adapter.tokenizer.convert_ids_to_tokens(ids)
    for r in range(2):
        for c in range(2):
            tile = cells[2 * r:2 * r + 2, 2 * c:2 * c + 2].ravel()
            marker = tokens.index(f"<row_{r + 1}_col_{c + 1}>")  # the processor's own layout: its markers
            assert tile.tolist() == list(range(marker + 1, marker + 5))
    global_view = tokens.index("<global-img>")
    assert not set(range(global_view + 1, global_view + 5)) & set(cells.ravel().tolist())

    caption = engine.caption([scene_images[0]], model=str(idefics3))[0].caption
    assert caption == plain(idefics3, scene_images[0], "Describe this image.", max_new_tokens=40, do_sample=False)
    answer = engine.ask(scene_images[1], ["what color is the star ?"], model=str(idefics3),
                        generation=GenerationOptions(max_new_tokens=8))[0].answer
    assert answer == plain(idefics3, scene_images[1], "what color is the star ?", max_new_tokens=8, do_sample=False)
    if build is build_smolvlm:  # its processor loads without a video processor: the conversation is SmolVLM's own
        from types import SimpleNamespace

        from transformers import SmolVLMProcessor

        conversation = adapter.messages((("how many objects are there ?", "two"),), "what color is the star ?")
        stock = load_processor(idefics3)
        stock.video_processor = SimpleNamespace(num_frames=64, fps=1)  # what SmolVLM's own method reads first
        assert (adapter.processor.apply_chat_template(conversation, add_generation_prompt=True)
                == SmolVLMProcessor.apply_chat_template(stock, conversation, add_generation_prompt=True))
    # A random model writes its processor's own special tokens too (<row_2_col_5>): not words, no maps.
    for image in scene_images:
        written = engine.caption([image], model=str(idefics3), generation=GenerationOptions(max_new_tokens=6))[0]
        assert "".join(written.tokens) == written.caption.replace(" ", "")  # (decoding joins "." to its word)
    # Against the model's own attention: the first word's weights on each tile's tokens, in place. (A picture
    # whose reply starts with a word: this random model may start with one of its markers.)
    for image in [picture, *scene_images]:
        batch = adapter.inputs(image, [], "Describe this image.", asking=False)
        with torch.inference_mode():
            first = adapter.model.generate(**batch, max_new_tokens=1, do_sample=False)[:, -1:]
        if adapter.tokenizer.decode(first[0], skip_special_tokens=True).strip():
            break
    result = engine.caption([image], model=str(idefics3), attention=True,
                            generation=GenerationOptions(max_new_tokens=3))[0]
    stack = result.attention
    cells = adapter.image_cells(batch["input_ids"][0].tolist())
    assert stack.weights.shape[-2:] == cells.shape and stack.tokens == result.tokens
    assert adapter.tokenizer.decode(first[0]).strip() == result.tokens[0]
    full = torch.cat([batch["input_ids"], first], 1)
    adapter.model.set_attn_implementation("eager")
    with torch.inference_mode():
        attentions = adapter.model(input_ids=full, pixel_values=batch["pixel_values"],
                                   pixel_attention_mask=batch["pixel_attention_mask"],
                                   output_attentions=True).attentions
    adapter.model.set_attn_implementation("sdpa")
    row = attentions[1][0, 0, batch["input_ids"].shape[1] - 1].numpy()
    np.testing.assert_allclose(stack.weights[0, 1, 0], row[cells], atol=1e-5)


def test_llava_next_maps_its_tiles_grid_without_padding_or_newlines(tmp_path, scene_images):
    import torch
    from PIL import Image

    folder = build_llava_next(tmp_path / "llava-next")
    engine = Engine()
    adapter = engine.adapter(Task.CAPTION, str(folder))
    picture = Image.new("RGB", (70, 40), (90, 140, 210))  # wide: tiles of 32 x 64, the padding cut off
    batch = adapter.inputs(picture, [], "Describe this image.", asking=False)
    ids = batch["input_ids"][0].tolist()
    cells = adapter.image_cells(ids, batch["image_sizes"][0].tolist())
    positions = [i for i, t in enumerate(ids) if t == adapter.image_token_id]
    rows, cols = cells.shape
    assert len(positions) == 16 + rows * (cols + 1) and cols > rows  # the base view, then rows and newlines
    newlines = {positions[16 + (r + 1) * (cols + 1) - 1] for r in range(rows)}
    assert not newlines & set(cells.ravel().tolist()) and not set(positions[:16]) & set(cells.ravel().tolist())

    assert engine.caption([scene_images[0]], model=str(folder))[0].caption == plain(
        folder, scene_images[0], "Describe this image.", max_new_tokens=40, do_sample=False)
    result = engine.caption([picture], model=str(folder), attention=True,
                            generation=GenerationOptions(max_new_tokens=3))[0]
    assert result.attention.weights.shape[-2:] == (rows, cols)
    with torch.inference_mode():
        first = adapter.model.generate(**batch, max_new_tokens=1, do_sample=False)[:, -1:]
    assert adapter.tokenizer.decode(first[0]).strip() == result.tokens[0]
    adapter.model.set_attn_implementation("eager")
    with torch.inference_mode():
        attentions = adapter.model(input_ids=torch.cat([batch["input_ids"], first], 1),
                                   pixel_values=batch["pixel_values"], image_sizes=batch["image_sizes"],
                                   output_attentions=True).attentions
    adapter.model.set_attn_implementation("sdpa")
    row = attentions[0][0, 1, batch["input_ids"].shape[1] - 1].numpy()
    np.testing.assert_allclose(result.attention.weights[0, 0, 1], row[cells], atol=1e-5)


@pytest.mark.parametrize("build", [build_qwen2_vl, build_qwen2_5_vl], ids=["qwen2_vl", "qwen2_5_vl"])
def test_qwen_merged_patches_sit_where_m_rope_puts_them_and_replies_match_plain_transformers(build, tmp_path,
                                                                                            scene_images):
    import torch
    from PIL import Image

    folder = build(tmp_path / build.__name__)
    engine = Engine()
    adapter = engine.adapter(Task.VQA, str(folder))
    assert adapter.info.architecture.startswith(("Qwen2VLForConditionalGeneration (qwen2_vl_vision",
                                                 "Qwen2_5_VLForConditionalGeneration (qwen2_5_vl_vision"))
    picture = Image.new("RGB", (64, 40), (90, 140, 210))  # its own resolution: 32 x 64 px, 4 x 8 patches
    batch = adapter.inputs(picture, [], "Describe this image.", asking=False)
    grid = batch["image_grid_thw"][0].tolist()
    assert grid == [1, 4, 8]
    cells = adapter.image_cells(batch["input_ids"][0].tolist(), grid_thw=grid)
    assert cells.shape == (2, 4)  # the processor's grid, 2 x 2 patches a token
    # Each token's true place is where the model's M-RoPE puts it: its height and width position ids.
    positions, _ = adapter.model.model.get_rope_index(batch["input_ids"], image_grid_thw=batch["image_grid_thw"],
                                                      attention_mask=batch["attention_mask"],
                                                      mm_token_type_ids=batch["mm_token_type_ids"])
    start = positions[1, 0, cells[0, 0]]
    for r in range(2):
        for c in range(4):
            assert positions[1:, 0, cells[r, c]].tolist() == [start + r, start + c]

    for image in scene_images[:2]:
        caption = engine.caption([image], model=str(folder))[0].caption
        assert caption == plain(folder, image, "Describe this image.", max_new_tokens=40, do_sample=False)
    history = (("how many objects are there ?", "two"),)
    got = engine.ask(scene_images[0], ["what color is the star ?"], model=str(folder), history=history,
                     generation=GenerationOptions(max_new_tokens=8))[0].answer
    assert got == plain(folder, scene_images[0], "what color is the star ?", history, max_new_tokens=8,
                        do_sample=False)

    # The maps: the teacher-forced pass gets generate's M-RoPE positions (its logits are generate's), and each
    # word's weights are the model's own eager attention on the image tokens, in place.
    options = GenerationOptions(max_new_tokens=3)
    result = engine.caption([picture], model=str(folder), attention=True, generation=options)[0]
    with torch.inference_mode():
        written = adapter.model.generate(**batch, max_new_tokens=3, do_sample=False, output_scores=True,
                                         return_dict_in_generate=True)
    new = written.sequences[:, batch["input_ids"].shape[1]:]
    words = [i for i, t in enumerate(new[0].tolist()) if t not in adapter.tokenizer.all_special_ids]
    assert result.tokens == tuple(adapter.tokenizer.decode([new[0, i]]) for i in words)
    assert result.attention.weights.shape == (len(words), 2, 2, 2, 4) and words
    full = torch.cat([batch["input_ids"], new], 1)
    types = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(new)], 1)
    adapter.model.set_attn_implementation("eager")
    with torch.inference_mode():
        out = adapter.model(input_ids=full, pixel_values=batch["pixel_values"], mm_token_type_ids=types,
                            image_grid_thw=batch["image_grid_thw"], output_attentions=True)
        flat = adapter.model(input_ids=full, pixel_values=batch["pixel_values"], mm_token_type_ids=types,
                             image_grid_thw=batch["image_grid_thw"],
                             position_ids=torch.arange(full.shape[1])[None].expand(3, 1, -1))
    adapter.model.set_attn_implementation("sdpa")
    queries = [batch["input_ids"].shape[1] - 1 + i for i in range(3)]
    scores = torch.cat(written.scores)
    torch.testing.assert_close(out.logits[0, queries], scores, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(flat.logits[0, queries], scores, atol=1e-2)  # the check tells positions apart
    for i, word in enumerate(words):  # a word's map is the attention of the position that wrote it
        for layer in range(2):
            row = out.attentions[layer][0, 1, queries[word]].numpy()
            np.testing.assert_allclose(result.attention.weights[i, layer, 1], row[cells], atol=1e-5)


def plain_florence2(folder, image, prompt: str, **generate):
    """What transformers alone replies to Florence-2: its processor on the task or question, generate, decode (the
    decoder's sequence is the reply)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, **generate)
    return processor.tokenizer.decode(out[0], skip_special_tokens=True).strip()


def test_florence2_captions_by_task_answers_one_turn_and_maps_its_decoders_cross_attention(tmp_path, scene_images,
                                                                                          photos, capsys):
    import torch

    folder = build_florence2(tmp_path / "florence2")
    engine = Engine()
    adapter = engine.adapter(Task.CAPTION, str(folder))
    assert adapter.info.architecture == "Florence2ForConditionalGeneration (florence_vision + bart)"
    assert adapter.info.tasks == {Task.CAPTION, Task.VQA} and adapter.info.grid == (4, 4)
    greedy = dict(max_new_tokens=12, do_sample=False)
    for image in scene_images[:2]:
        caption = engine.caption([image], model=str(folder), generation=GenerationOptions(max_new_tokens=12))[0]
        assert caption.caption == plain_florence2(folder, image, "<CAPTION>", **greedy)
        detailed = GenerationOptions(prompt="<DETAILED_CAPTION>", max_new_tokens=12)
        assert engine.caption([image], model=str(folder), generation=detailed)[0].caption == plain_florence2(
            folder, image, "<DETAILED_CAPTION>", **greedy)
        answer = engine.ask(image, ["what color is the star ?"], model=str(folder),
                            generation=GenerationOptions(max_new_tokens=12))[0].answer
        assert answer == plain_florence2(folder, image, "what color is the star ?", **greedy)
        # A prompted model holds no conversation: earlier turns change nothing.
        again = engine.ask(image, ["what color is the star ?"], model=str(folder), history=(("how many ?", "two"),),
                           generation=GenerationOptions(max_new_tokens=12))[0].answer
        assert again == answer
    tasks = [adapter.inputs(scene_images[0], [], task, asking=False)["input_ids"][0].tolist()
             for task in ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")]
    assert len({tuple(ids) for ids in tasks}) == 3  # each task is its own question to the model

    # The image's tokens: one pooled over DaViT's feature map, then the map's cells row-major.
    batch = adapter.inputs(scene_images[0], [], "<CAPTION>", asking=False)
    with torch.inference_mode():
        features = adapter.model.model.vision_tower(batch["pixel_values"]).last_hidden_state
    assert features.shape[-2:] == (4, 4)
    positions = (batch["input_ids"][0] == adapter.image_token_id).nonzero().flatten()
    assert positions.tolist() == list(range(17))  # the encoder's input: the image's tokens, then the prompt's
    cells = adapter.image_cells(batch["input_ids"][0].tolist())
    assert cells.tolist() == positions[1:].reshape(4, 4).tolist()

    # Each word's map is the decoder's cross-attention, from the position that wrote it, on those cells.
    result = engine.caption([scene_images[0]], model=str(folder), attention=True,
                            generation=GenerationOptions(max_new_tokens=5))[0]
    with torch.inference_mode():
        written = adapter.model.generate(**batch, max_new_tokens=5, do_sample=False)
    new = written[0, 1:].tolist()
    words = [i for i, t in enumerate(new) if t not in adapter.tokenizer.all_special_ids]
    assert result.tokens == tuple(adapter.tokenizer.decode([new[i]]) for i in words) and words
    assert result.attention.weights.shape == (len(words), 2, 2, 4, 4)
    adapter.model.set_attn_implementation("eager")
    with torch.inference_mode():
        out = adapter.model(**batch, decoder_input_ids=written[:, :-1] if new[-1] == 2 else written,
                            output_attentions=True)
    adapter.model.set_attn_implementation("sdpa")
    for i, word in enumerate(words):
        for layer in range(2):
            for head in range(2):
                row = out.cross_attentions[layer][0, head, word].numpy()
                np.testing.assert_allclose(result.attention.weights[i, layer, head], row[cells], atol=1e-5)

    assert main(["caption", "--model", str(folder), "--json", "--attention", "--max-new-tokens", "4",
                 str(photos / "scene0.png")]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["caption"] and row["grid"] == [4, 4] and len(row["tokens"]) == len(row["attention"]) >= 1


def plain(folder, image, text: str, history=(), **generate):
    """What transformers alone replies: the processor's chat template, generate, decode."""
    messages = []
    for asked, replied in [*history, (text, None)]:
        image_part = [] if messages else [{"type": "image"}]
        messages.append({"role": "user", "content": [*image_part, {"type": "text", "text": asked}]})
        if replied is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": replied}]})
    prompt = load_processor(folder).apply_chat_template(messages, add_generation_prompt=True)
    return plain_generate(folder, image, prompt, **generate)


def test_captions_and_answers_are_what_plain_transformers_writes(llava, scene_images):
    engine = Engine()
    adapter = engine.adapter(Task.CAPTION, str(llava))
    assert adapter.info.family == "vlm" and adapter.info.tasks == {Task.CAPTION, Task.VQA}
    assert "LlavaForConditionalGeneration (clip_vision_model + llama)" == adapter.info.architecture
    for image in scene_images[:3]:
        caption = engine.caption([image], model=str(llava))[0].caption
        assert caption == plain(llava, image, "Describe this image.", max_new_tokens=40, do_sample=False)
        answer = engine.ask(image, ["what color is the circle ?"], model=str(llava))[0].answer
        assert answer == plain(llava, image, "what color is the circle ?", max_new_tokens=40, do_sample=False)
    # The instruction and the generation settings are the user's, as for every family.
    options = GenerationOptions(prompt="how many objects are there ?", max_new_tokens=5, num_beams=2)
    got = engine.caption(scene_images[:1], model=str(llava), generation=options)[0].caption
    assert got == plain(llava, scene_images[0], "how many objects are there ?", max_new_tokens=5, num_beams=2,
                        do_sample=False)


def test_a_conversation_goes_through_the_chat_template_turn_after_turn(llava, scene_images):
    engine = Engine()
    history = (("how many objects are there ?", "two"), ("what color is the circle ?", "red"))
    got = engine.ask(scene_images[1], ["what is left of the star ?"], model=str(llava), history=history,
                     generation=GenerationOptions(max_new_tokens=8))[0]
    assert got.answer == plain(llava, scene_images[1], "what is left of the star ?", history, max_new_tokens=8,
                               do_sample=False)
    alone = engine.ask(scene_images[1], ["what is left of the star ?"], model=str(llava),
                       generation=GenerationOptions(max_new_tokens=8))[0]
    assert alone.answer == plain(llava, scene_images[1], "what is left of the star ?", max_new_tokens=8,
                                 do_sample=False)
    # The answer's words each carry their own map; their mean is the answer's evidence.
    mapped = engine.ask(scene_images[1], ["what color is the star ?"], model=str(llava), attention=True,
                        generation=GenerationOptions(max_new_tokens=4))[0]
    words = mapped.answer_token_attention
    assert words is not None and words.tokens == mapped.answer_tokens and len(mapped.answer_tokens) >= 1
    np.testing.assert_allclose(mapped.answer_attention.weights[0], words.weights.mean(axis=0), atol=1e-6)


def test_each_generated_word_has_its_attention_on_the_patch_grid_in_row_major_order(llava, scene_images):
    import torch

    engine = Engine()
    result = engine.caption(scene_images[:1], model=str(llava), attention=True,
                            generation=GenerationOptions(max_new_tokens=6))[0]
    stack = result.attention
    assert stack is not None and stack.tokens == result.tokens
    assert stack.weights.shape == (len(result.tokens), 2, 2, 4, 4)  # words, layers, heads, a 4 x 4 grid
    assert np.all(stack.weights >= 0) and np.all(stack.weights.sum(axis=(-2, -1)) <= 1 + 1e-5)

    # Against the model's own eager attention: image token k is patch (k // 4, k % 4) of the grid.
    adapter = engine.adapter(Task.CAPTION, str(llava))
    batch = adapter.inputs(scene_images[0], [], "Describe this image.")
    positions = (batch["input_ids"][0] == adapter.image_token_id).nonzero().flatten()
    assert len(positions) == 16 == adapter.processor.image_processor.crop_size["height"] ** 2 // 8 ** 2
    ids = adapter.tokenizer(result.caption.split()[0], add_special_tokens=False)["input_ids"]
    full = torch.cat([batch["input_ids"], torch.tensor([ids])], dim=1)
    adapter.model.set_attn_implementation("eager")
    with torch.inference_mode():
        attentions = adapter.model(input_ids=full, pixel_values=batch["pixel_values"],
                                   output_attentions=True).attentions
    adapter.model.set_attn_implementation("sdpa")
    query = batch["input_ids"].shape[1] - 1  # the position that produced the first word
    for layer in range(2):
        for head in range(2):
            row = attentions[layer][0, head, query, positions].numpy()
            np.testing.assert_allclose(stack.weights[0, layer, head], row.reshape(4, 4), atol=1e-5)


def test_the_cli_captions_and_answers_with_maps(llava, photos, capsys):
    assert main(["caption", "--model", str(llava), "--json", "--attention", "--max-new-tokens", "4",
                 str(photos / "scene0.png")]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["caption"] and row["grid"] == [4, 4] and len(row["tokens"]) == len(row["attention"])
    assert main(["ask", "--model", str(llava), "--json", "--attention", "--max-new-tokens", "3",
                 str(photos / "scene0.png"), "what color is the star ?"]) == 0
    answer = json.loads(capsys.readouterr().out.splitlines()[0])
    assert answer["question"] == "what color is the star ?" and answer["answer"]
    assert len(answer["answer_tokens"]) == len(answer["answer_token_attention"]) >= 1
    assert len(answer["answer_attention"]) == 16 and answer["grid"] == [4, 4]
    assert main(["match", "--model", str(llava), str(photos / "scene0.png"), "a red star"]) != 0
    assert "cannot do itm (it does caption, vqa)" in capsys.readouterr().err


def replies_of(folder, length: int) -> None:
    """Make the checkpoint's replies exactly `length` tokens (its end token never comes first)."""
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, max_new_tokens=length,
                     min_new_tokens=length).save_pretrained(folder)


def long_llava(llava, tmp_path):
    """A copy of the LLaVA whose replies run 3,000 tokens: long enough to stop in the middle."""
    import shutil

    long = tmp_path / "long-llava"
    shutil.copytree(llava, long)
    replies_of(long, 3000)
    return long


def test_the_ask_panel_shows_the_answer_as_it_is_written_and_stop_keeps_what_it_wrote(qtbot, tmp_path, monkeypatch,
                                                                                     llava, tiny_models, photos):
    import time

    from PySide6.QtCore import QUrl

    from mmstudio.gui.panels.ask_panel import Turn
    from tests.test_gui_search import open_window

    long = long_llava(llava, tmp_path)
    window = open_window(qtbot, tmp_path, monkeypatch, {**tiny_models, Task.VQA: long}, tiny_models[Task.ITM])
    panel = window.ask_panel
    window.tabs.setCurrentWidget(panel)
    window.add_paths([str(photos / "scene0.png")])
    qtbot.waitUntil(lambda: panel._current is not None, timeout=60000)  # the picture is the panel's
    panel.ask("what color is the star ?")
    turn: Turn = panel.history[window.gallery.current_ref().key][-1]
    qtbot.waitUntil(lambda: bool(len(turn.partial.split()) >= 5 or turn.error or turn.result), timeout=60000)
    assert turn.error is None, turn.error
    assert turn.result is None and "▌" in panel.chat.toPlainText()  # words shown before the answer is done
    assert panel.stop_button.isEnabled()
    started = time.perf_counter()
    panel.stop()
    qtbot.waitUntil(lambda: turn.error is not None, timeout=10000)
    print(f"\nStop ended the generation in {time.perf_counter() - started:.3f} s "
          f"after {len(turn.partial.split())} words")
    assert turn.result is None and 5 <= len(turn.partial.split()) < 3000
    assert "(stopped)" in panel.chat.toPlainText() and turn.partial in panel.chat.toPlainText()
    qtbot.waitUntil(lambda: not panel.stop_button.isEnabled(), timeout=5000)

    # The next question carries the conversation; a word of its answer, clicked, shows that word's map.
    replies_of(long, 3)
    window.client.stop()
    window = open_window(qtbot, tmp_path, monkeypatch, {**tiny_models, Task.VQA: long}, tiny_models[Task.ITM])
    panel = window.ask_panel
    window.tabs.setCurrentWidget(panel)
    window.add_paths([str(photos / "scene0.png")])
    qtbot.waitUntil(lambda: panel._current is not None, timeout=60000)
    panel.ask("how many objects are there ?")
    qtbot.waitUntil(lambda: panel.history[panel._current.key][-1].result is not None, timeout=60000)
    asked = []
    monkeypatch.setattr(window.client, "submit", lambda request, _submit=window.client.submit:
                        asked.append(request) or _submit(request))
    panel.ask("what color is the star ?")
    first = panel.history[panel._current.key][0].result
    assert asked[0].history == (("how many objects are there ?", first.answer),)
    qtbot.waitUntil(lambda: panel.history[panel._current.key][-1].result is not None, timeout=60000)
    shown = []
    panel.overlay_requested.connect(lambda stack, index, label: shown.append((stack, index, label)))
    result = panel.history[panel._current.key][-1].result
    panel._on_link(QUrl("w:1:0"))
    assert shown == [(result.answer_token_attention, 0, f"answer word “{result.answer_tokens[0]}”")]
    window.client.stop()


def test_the_caption_panel_shows_a_chat_models_caption_as_it_is_written(qtbot, tmp_path, monkeypatch, llava,
                                                                        tiny_models, photos):
    from tests.test_gui_search import open_window

    long = long_llava(llava, tmp_path)
    window = open_window(qtbot, tmp_path, monkeypatch, {**tiny_models, Task.CAPTION: long}, tiny_models[Task.ITM])
    panel = window.caption_panel
    window.add_paths([str(photos / "scene0.png")])  # the selected picture is captioned at once
    qtbot.waitUntil(lambda: panel._current is not None and len(panel.partial.get(panel._current.key, "").split())
                    >= 5, timeout=60000)
    key = panel._current.key
    assert key not in panel.results and "▌" in panel.words.toPlainText()  # words before the caption is done
    panel.pending.cancel_all()
    qtbot.waitUntil(lambda: not panel.pending, timeout=10000)
    assert key not in panel.results and len(panel.partial[key].split()) < 3000
    qtbot.waitUntil(lambda: "(stopped)" in panel.words.toPlainText(), timeout=5000)  # what it wrote stays
    window.client.stop()

"""Generation settings: each family's text equals plain transformers `generate` with the same settings.

Greedy, beams, sampling with a seed, the length and repetition settings, and a caption prompt, on the tiny
checkpoints of conftest.py and family_checkpoints.py; and a checkpoint's own generation_config is the default.
"""

from __future__ import annotations

import json

import pytest
import torch

from mmstudio.engine import Engine
from mmstudio.errors import SettingsError
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.generation import DEFAULT_MAX_NEW_TOKENS, GenerationOptions, generation_config, used

EXACT = LoadOptions(device="cpu", dtype="fp32")
SAMPLE = dict(do_sample=True, temperature=1.3, top_k=20, top_p=0.9, seed=5)
SETTINGS = [
    dict(max_new_tokens=9),
    dict(max_new_tokens=9, num_beams=3),
    dict(max_new_tokens=9, min_new_tokens=6, repetition_penalty=1.8, no_repeat_ngram_size=2),
    dict(max_new_tokens=9, **SAMPLE),
    dict(max_new_tokens=9, num_beams=2, **SAMPLE),
]
IDS = ["greedy", "beams", "length-and-repetition", "sampling", "beam-sampling"]


def _plain_kwargs(settings: dict) -> dict:
    kwargs = {k: v for k, v in settings.items() if k not in ("seed", "prompt")}
    if "seed" in settings:
        torch.manual_seed(settings["seed"])
    return kwargs


# ------------------------------------------------------------------- rules


def test_unset_settings_are_the_checkpoints_and_mmstudio_only_adds_a_length():
    from transformers import GenerationConfig

    said_nothing = generation_config(GenerationOptions(), GenerationConfig())
    assert said_nothing.max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    assert used(said_nothing, GenerationOptions())["num_beams"] == 1  # transformers' default, as generate() has it
    author = GenerationConfig(max_new_tokens=12, num_beams=4)
    assert generation_config(GenerationOptions(), author).max_new_tokens == 12
    assert generation_config(GenerationOptions(), GenerationConfig(max_length=16)).max_new_tokens is None
    user = generation_config(GenerationOptions(num_beams=2, max_new_tokens=5), author)
    assert (user.num_beams, user.max_new_tokens) == (2, 5)
    assert author.num_beams == 4, "the checkpoint's own config is not changed"
    record = used(user, GenerationOptions(num_beams=2, max_new_tokens=5))
    assert record["num_beams"] == 2 and "temperature" not in record  # sampling settings only where it samples
    sampled = GenerationOptions(do_sample=True, temperature=0.7, seed=3, prompt="a picture of")
    record = used(generation_config(sampled, GenerationConfig()), sampled)
    assert (record["temperature"], record["seed"], record["prompt"]) == (0.7, 3, "a picture of")
    json.dumps(record)


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(num_beams=True), dict(top_p=1.5),
                                 dict(temperature=float("nan")), dict(min_new_tokens=9, max_new_tokens=3),
                                 dict(prompt="two\nlines"), dict(seed=-1)])
def test_out_of_range_settings_name_the_setting(bad):
    with pytest.raises(SettingsError) as caught:
        GenerationOptions(**bad).validate()
    assert caught.value.name in bad


def test_saved_settings_come_back():
    options = GenerationOptions(num_beams=3, prompt="a picture of", do_sample=False)
    assert GenerationOptions.from_dict({**options.chosen(), "from_a_newer_version": 1}) == options


# -------------------------------------------------------------------- BLIP


def _blip(cls_name: str, folder):
    import transformers
    from transformers import BlipProcessor

    return BlipProcessor.from_pretrained(folder), getattr(transformers, cls_name).from_pretrained(folder).eval()


@pytest.mark.parametrize("settings", SETTINGS + [dict(max_new_tokens=9, prompt="a red"),
                                                 dict(max_new_tokens=9, num_beams=3, prompt="a large")],
                         ids=IDS + ["prompt", "prompt-beams"])
def test_blip_captions_equal_plain_generate(tiny_models, scene_images, settings):
    processor, model = _blip("BlipForConditionalGeneration", tiny_models[Task.CAPTION])
    images = scene_images[:3]
    prompt = settings.get("prompt")
    inputs = processor(images=images, text=[prompt] * len(images) if prompt else None, return_tensors="pt")
    out = model.generate(**inputs, **_plain_kwargs(settings))
    expected = processor.batch_decode(out, skip_special_tokens=True)
    options = GenerationOptions(**settings)
    ours = Engine(EXACT).caption(images, model=str(tiny_models[Task.CAPTION]), batch_size=3, generation=options,
                                 attention=True)
    assert [r.caption for r in ours] == expected
    for result in ours:  # one map per generated word, the prompt's words excluded
        assert result.attention is not None and len(result.attention.tokens) == len(result.tokens)
        if prompt:  # the text starts with the prompt; its words were given, not generated
            assert result.caption.startswith(prompt) and result.prompt == prompt
            assert len(result.tokens) == len(result.caption.split()) - len(prompt.split())


@pytest.mark.parametrize("settings", SETTINGS, ids=IDS)
def test_blip_answers_equal_plain_generate(tiny_models, scene_images, settings):
    processor, model = _blip("BlipForQuestionAnswering", tiny_models[Task.VQA])
    question = "what color is the circle?"
    engine = Engine(EXACT)
    for image in scene_images[:2]:
        inputs = processor(images=image, text=question, return_tensors="pt")
        expected = processor.decode(model.generate(**inputs, **_plain_kwargs(settings))[0], skip_special_tokens=True)
        ours = engine.ask(image, [question], model=str(tiny_models[Task.VQA]), generation=GenerationOptions(**settings))
        assert ours[0].answer == expected


def test_a_blip_checkpoints_generation_config_changes_its_output_as_it_changes_plain_generate(
        tiny_models, scene_images, tmp_path):
    """Not at all: transformers' BLIP generate() runs its text decoder, whose config is made from the text
    config, and the folder's generation_config.json reaches it nowhere. The same file leaves ours alone too."""
    from transformers import BlipForConditionalGeneration

    processor, model = _blip("BlipForConditionalGeneration", tiny_models[Task.CAPTION])
    inputs = processor(images=scene_images[:2], return_tensors="pt")
    before = model.generate(**inputs)
    model.generation_config.max_new_tokens = 4
    model.generation_config.num_beams = 2
    model.save_pretrained(tmp_path / "short")
    processor.save_pretrained(tmp_path / "short")
    reloaded = BlipForConditionalGeneration.from_pretrained(tmp_path / "short").eval()
    assert reloaded.generation_config.max_new_tokens == 4  # the file was read...
    assert reloaded.generate(**inputs).tolist() == before.tolist()  # ...and changed nothing
    engine = Engine(EXACT)
    ours = [r.caption for r in engine.caption(scene_images[:2], model=str(tmp_path / "short"))]
    assert ours == [r.caption for r in engine.caption(scene_images[:2], model=str(tiny_models[Task.CAPTION]))]
    used_now = engine.adapter(Task.CAPTION, str(tmp_path / "short")).generation_used(GenerationOptions())
    assert (used_now["max_new_tokens"], used_now["num_beams"]) == (40, 1)


# ---------------------------------------------------------------- ViT-GPT2


def _vit_gpt2(folder):
    from transformers import AutoTokenizer, VisionEncoderDecoderModel, ViTImageProcessor

    return (VisionEncoderDecoderModel.from_pretrained(folder).eval(), ViTImageProcessor.from_pretrained(folder),
            AutoTokenizer.from_pretrained(folder))


@pytest.mark.parametrize("settings", SETTINGS + [dict(max_new_tokens=9, prompt="ab")], ids=IDS + ["prompt"])
def test_vit_gpt2_captions_equal_plain_generate(family_models, scene_images, settings):
    folder = family_models["vit-gpt2"]
    model, image_processor, tokenizer = _vit_gpt2(folder)
    images = scene_images[:3]
    pixel_values = image_processor(images=images, return_tensors="pt").pixel_values
    extra = {}
    if settings.get("prompt"):  # the decoder prefix, after the start token
        prefix = tokenizer(settings["prompt"], add_special_tokens=False)["input_ids"]
        extra["decoder_input_ids"] = torch.tensor([[model.generation_config.decoder_start_token_id, *prefix]] * 3)
    kwargs = _plain_kwargs(settings)
    expected = [t.strip() for t in tokenizer.batch_decode(model.generate(pixel_values, **extra, **kwargs),
                                                          skip_special_tokens=True)]
    ours = Engine(EXACT).caption(images, model=str(folder), batch_size=3, generation=GenerationOptions(**settings),
                                 attention=True)
    assert [r.caption for r in ours] == expected
    assert all(r.attention is not None and len(r.attention.tokens) == len(r.tokens) for r in ours)


def test_a_vit_gpt2_checkpoints_generation_config_changes_the_default_as_plain_generate(family_models,
                                                                                       scene_images, tmp_path):
    import shutil

    folder = tmp_path / "vit-gpt2-short"
    shutil.copytree(family_models["vit-gpt2"], folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "max_new_tokens": 3, "num_beams": 2}))
    model, image_processor, tokenizer = _vit_gpt2(folder)
    pixel_values = image_processor(images=scene_images[:3], return_tensors="pt").pixel_values
    expected = [t.strip() for t in tokenizer.batch_decode(model.generate(pixel_values), skip_special_tokens=True)]
    ours = Engine(EXACT).caption(scene_images[:3], model=str(folder))
    assert [r.caption for r in ours] == expected
    assert all(len(r.tokens) <= 3 for r in ours)
    longer = Engine(EXACT).caption(scene_images[:3], model=str(folder), generation=GenerationOptions(max_new_tokens=8))
    assert any(len(r.tokens) > 3 for r in longer), "the user's setting wins over the checkpoint's"


def test_vilt_takes_generation_settings_and_records_none(family_models, scene_images):
    engine = Engine(EXACT)
    folder = str(family_models["vilt"])
    plain = engine.ask(scene_images[0], ["what color is the circle?"], model=folder)
    beams = engine.ask(scene_images[0], ["what color is the circle?"], model=folder,
                       generation=GenerationOptions(num_beams=4))
    assert plain[0].answer == beams[0].answer  # answers are classes: nothing is generated
    assert engine.adapter(Task.VQA, folder).generation_used(GenerationOptions(num_beams=4)) == {}


# --------------------------------------------------------------------- CLI


def test_cli_flags_reach_the_model_and_json_records_them(capsys, tiny_models, scene_images, tmp_path):
    from mmstudio.cli import main

    path = tmp_path / "scene.png"
    scene_images[0].save(path)
    model = str(tiny_models[Task.CAPTION])
    argv = ["caption", "--model", model, "--json", "--num-beams", "2", "--max-new-tokens", "6", "--prompt", "a red",
            "--no-repeat-ngram-size", "2", str(path)]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    options = GenerationOptions(num_beams=2, max_new_tokens=6, prompt="a red", no_repeat_ngram_size=2)
    assert line["caption"] == Engine(EXACT).caption([scene_images[0]], model=model, generation=options)[0].caption
    assert line["generation"] == {"max_new_tokens": 6, "num_beams": 2, "repetition_penalty": 1.0,
                                  "no_repeat_ngram_size": 2, "do_sample": False, "prompt": "a red"}
    assert main(["ask", "--model", str(tiny_models[Task.VQA]), "--json", "--sample", "--seed", "3", "--top-k", "5",
                 str(path), "what color is the circle?"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["generation"]["do_sample"] and (line["generation"]["seed"], line["generation"]["top_k"]) == (3, 5)


@pytest.mark.parametrize("argv, says", [(["--top-p", "1.5"], "--top-p"), (["--num-beams", "0"], "--num-beams"),
                                        (["--prompt", "a picture of"], "does not know: picture")])
def test_cli_refuses_bad_settings_naming_them(capsys, tiny_models, scene_images, tmp_path, argv, says):
    from mmstudio.cli import main

    path = tmp_path / "scene.png"
    scene_images[0].save(path)
    try:
        code = main(["caption", "--model", str(tiny_models[Task.CAPTION]), *argv, str(path)])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2 and says in capsys.readouterr().err

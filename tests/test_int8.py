"""int8 and bf16 on the CPU (models/quantize.py): every family runs, scores stay close to fp32, evidence maps
still come."""

from __future__ import annotations

import numpy as np
import pytest

from mmstudio.engine import Engine
from mmstudio.errors import ModelLoadError
from mmstudio.models.base import LoadOptions, Task

FP32 = LoadOptions(device="cpu", dtype="fp32")
INT8 = LoadOptions(device="cpu", dtype="int8")
BF16 = LoadOptions(device="cpu", dtype="bf16")
TEXTS = ["a red circle", "a large blue square and a small green star", "two yellow triangles"]


def test_builtin_models_in_bf16_caption_and_answer_as_in_fp32(scene_images):
    exact, half = Engine(FP32), Engine(BF16)
    assert half.adapter(Task.CAPTION, "builtin:caption").info.dtype == "bf16"
    assert [r.caption for r in half.caption(scene_images, model="builtin:caption")] == \
        [r.caption for r in exact.caption(scene_images, model="builtin:caption")]
    question = ["what color is the circle?"]
    for image in scene_images[:3]:
        assert half.ask(image, question, model="builtin:vqa")[0].answer == \
            exact.ask(image, question, model="builtin:vqa")[0].answer


def test_builtin_models_in_int8_say_what_fp32_says(scene_images):
    exact, small = Engine(FP32), Engine(INT8)
    info = small.adapter(Task.CAPTION, "builtin:caption").info
    # Counted with the int8 weights (packed buffers, not parameters); a tied output layer becomes its own copy.
    assert info.dtype == "int8"
    assert info.parameters == pytest.approx(exact.adapter(Task.CAPTION, "builtin:caption").info.parameters, rel=0.01)
    captions = [r.caption for r in small.caption(scene_images, model="builtin:caption")]
    assert captions == [r.caption for r in exact.caption(scene_images, model="builtin:caption")]
    question = ["how many objects are there?"]
    for image in scene_images[:3]:
        assert small.ask(image, question, model="builtin:vqa")[0].answer == \
            exact.ask(image, question, model="builtin:vqa")[0].answer
    ours = small.match(scene_images[0], TEXTS, model="builtin:retrieval", attention=True)
    reference = exact.match(scene_images[0], TEXTS, model="builtin:retrieval", attention=True)
    assert [r.itm > 0.5 for r in ours] == [r.itm > 0.5 for r in reference]
    np.testing.assert_allclose([r.itc for r in ours], [r.itc for r in reference], atol=0.05)
    for mine, theirs in zip(ours, reference):  # Grad-CAM through the quantized layers: the same evidence
        a, b = mine.attention.maps()[0].ravel(), theirs.attention.maps()[0].ravel()
        assert a.max() > 0 and np.corrcoef(a, b)[0, 1] > 0.9


@pytest.mark.parametrize("options", [INT8, BF16], ids=["int8", "bf16"])
@pytest.mark.parametrize("family", ["clip", "siglip", "vit-gpt2", "vilt"])
def test_every_family_runs_in_int8_and_bf16(family_models, scene_images, family, options):
    folder = str(family_models[family])
    engine = Engine(options)
    if family in ("clip", "siglip"):
        results = engine.match(scene_images[1], TEXTS, model=folder, attention=True)
        reference = Engine(FP32).match(scene_images[1], TEXTS, model=folder)
        np.testing.assert_allclose([r.itc for r in results], [r.itc for r in reference], atol=0.1)
        assert all(np.isfinite(r.attention.weights).all() and r.attention.weights.max() > 0 for r in results)
    elif family == "vit-gpt2":
        assert engine.caption(scene_images[:2], model=folder, attention=True)[0].attention is not None
    else:
        assert engine.ask(scene_images[0], ["what color is the circle?"], model=folder)[0].answer


def test_int8_is_for_the_cpu(monkeypatch):
    import mmstudio.models.common as common

    monkeypatch.setattr(common, "pick_device", lambda requested: "cuda")
    with pytest.raises(ModelLoadError, match="int8 runs on the CPU only"):
        Engine(LoadOptions(device="cuda", dtype="int8")).adapter(Task.CAPTION, "builtin:caption")


def test_bf16_packs_the_blip_vision_tower_and_changes_only_rounding(tiny_models, scene_images):
    import torch

    from mmstudio.models.cpu_bf16 import PackedLinear, supported

    if not supported():
        pytest.skip("this torch build has no oneDNN bf16 linear")
    folder = str(tiny_models[Task.CAPTION])
    packed = Engine(BF16).adapter(Task.CAPTION, folder)
    layer = packed.model.vision_model.encoder.layers[0]
    assert isinstance(layer.mlp.fc1, PackedLinear) and isinstance(layer.self_attn.qkv, PackedLinear)
    assert packed.info.parameters == Engine(FP32).adapter(Task.CAPTION, folder).info.parameters
    from transformers import BlipForConditionalGeneration

    plain = BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16).eval()
    pixels = packed.image_processor(images=scene_images[:2], return_tensors="pt")["pixel_values"].to(torch.bfloat16)
    with torch.inference_mode():
        ours = packed.model.vision_model(pixel_values=pixels).last_hidden_state.float()
        theirs = plain.vision_model(pixel_values=pixels).last_hidden_state.float()
    scale = theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() < 0.05 * scale  # bf16 keeps 8 bits: the rounding differs, no more

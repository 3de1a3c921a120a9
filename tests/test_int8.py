"""int8 on the CPU (models/quantize.py): every family runs, scores stay close to fp32, evidence maps still come."""

from __future__ import annotations

import numpy as np
import pytest

from mmstudio.engine import Engine
from mmstudio.errors import ModelLoadError
from mmstudio.models.base import LoadOptions, Task

FP32 = LoadOptions(device="cpu", dtype="fp32")
INT8 = LoadOptions(device="cpu", dtype="int8")
TEXTS = ["a red circle", "a large blue square and a small green star", "two yellow triangles"]


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


@pytest.mark.parametrize("family", ["clip", "siglip", "vit-gpt2", "vilt"])
def test_every_family_runs_in_int8(family_models, scene_images, family):
    folder = str(family_models[family])
    engine = Engine(INT8)
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

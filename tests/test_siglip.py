"""SigLIP: sigmoid probabilities per text, equal to plain transformers; search and evidence maps as for CLIP.

(Its labels equal the zero-shot pipeline: tests/test_families.py, beside CLIP's.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmstudio.engine import Engine
from mmstudio.models.base import LoadOptions

EXACT = LoadOptions(device="cpu", dtype="fp32")
LABELS = ["red circle", "blue square", "a large yellow star", "two green triangles"]


@pytest.fixture(params=["siglip", "siglip2", "siglip2-naflex"])
def siglip(family_models, request):
    """SigLIP (SentencePiece tokenizer), SigLIP 2 at a fixed resolution (SiglipModel, Gemma tokenizer) and
    SigLIP 2 NaFlex (Siglip2Model: patches at the image's own aspect ratio)."""
    return family_models[request.param]


def test_each_text_is_scored_alone(siglip, scene_images):
    """A sigmoid, not a softmax: a text's probability does not depend on the others asked with it."""
    engine = Engine(EXACT)
    template = "This is a photo of {}."
    alone = engine.match(scene_images[0], [template.format(LABELS[0])], model=str(siglip))[0]
    together = engine.match(scene_images[0], [template.format(label) for label in LABELS], model=str(siglip))[0]
    assert alone.itm == pytest.approx(together.itm, abs=1e-6)


def test_scores_equal_plain_forward(siglip, scene_images):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(siglip).eval()  # SiglipModel, or Siglip2Model for NaFlex
    inputs = {**AutoTokenizer.from_pretrained(siglip)(LABELS, padding="max_length", max_length=64,
                                                       return_tensors="pt"),
              **AutoImageProcessor.from_pretrained(siglip)(images=scene_images[1], return_tensors="pt")}
    with torch.no_grad():
        out = model(**inputs)
        probs = torch.sigmoid(out.logits_per_image[0]).numpy()
        cosine = ((out.logits_per_image[0] - model.logit_bias) / model.logit_scale.exp()).numpy()
    engine = Engine(EXACT)
    ours = engine.match(scene_images[1], LABELS, model=str(siglip), attention=True)
    np.testing.assert_allclose([r.itm for r in ours], probs, atol=1e-5)
    np.testing.assert_allclose([r.itc for r in ours], cosine, atol=1e-5)
    embedder = engine.embedder(str(siglip))
    np.testing.assert_allclose(embedder.text_features(LABELS) @ embedder.image_features(scene_images[1:2])[0],
                               cosine, atol=1e-5)


def test_gradcam_map_per_text_on_the_patch_grid(siglip, scene_images):
    results = Engine(EXACT).match(scene_images[2], LABELS, model=str(siglip), attention=True)
    stacks = [r.attention for r in results]
    assert all(s.weights.shape == (1, 2, 2, 4, 4) and s.default_layer == 1 for s in stacks)
    assert all(np.all(s.weights >= 0) for s in stacks)
    maps = np.concatenate([s.maps() for s in stacks])
    assert not np.allclose(maps[0], maps[1]), "each text has its own map"


def test_search_and_labels_from_the_cli(siglip, scene_images, tmp_path, capsys):
    import json

    from mmstudio.cli import main

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, image in enumerate(scene_images):
        image.save(folder / f"scene{i}.png")
    assert main(["search", "--index", str(folder), "--model", str(siglip), "--json", "--top", "3", "a red circle"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]
    assert main(["match", "--model", str(siglip), "--json", str(folder / "scene0.png"), "--labels",
                 "red circle"]) == 0  # one label is a question of its own to a sigmoid
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and 0.0 < rows[0]["probability"] < 1.0


def test_naflex_maps_keep_the_pictures_aspect_ratio(family_models, scene_images):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    folder = family_models["siglip2-naflex"]
    wide = scene_images[0].resize((128, 32))  # 4:1: a 2 x 8 grid of the model's 16 patches
    shapes = AutoImageProcessor.from_pretrained(folder)(images=wide, return_tensors="pt")["spatial_shapes"][0]
    rows, cols = (int(v) for v in shapes)
    assert cols > rows
    engine = Engine(EXACT)
    results = engine.match(wide, LABELS, model=str(folder), attention=True)
    assert all(r.attention.weights.shape[-2:] == (rows, cols) for r in results)
    model = AutoModel.from_pretrained(folder).eval()
    inputs = {**AutoTokenizer.from_pretrained(folder)(LABELS, padding="max_length", max_length=64,
                                                      return_tensors="pt"),
              **AutoImageProcessor.from_pretrained(folder)(images=wide, return_tensors="pt")}
    with torch.no_grad():
        probs = torch.sigmoid(model(**inputs).logits_per_image[0]).numpy()
    np.testing.assert_allclose([r.itm for r in results], probs, atol=1e-5)
    square = engine.match(scene_images[0], LABELS[:1], model=str(folder))[0]  # another grid, cached apart
    assert square.itm != pytest.approx(results[0].itm, abs=1e-9)

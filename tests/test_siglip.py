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


@pytest.fixture(params=["siglip", "siglip2"])
def siglip(family_models, request):
    """SigLIP (SentencePiece tokenizer) and SigLIP 2 at a fixed resolution (Gemma tokenizer): one model class."""
    return family_models[request.param]


def test_each_text_is_scored_alone(siglip, scene_images):
    """A sigmoid, not a softmax: a text's probability does not depend on the others asked with it."""
    engine = Engine(EXACT)
    template = "This is a photo of {}."
    alone = engine.match(scene_images[0], [template.format(LABELS[0])], model=str(siglip))[0]
    together = engine.match(scene_images[0], [template.format(label) for label in LABELS], model=str(siglip))[0]
    assert alone.itm == pytest.approx(together.itm, abs=1e-6)


def test_scores_equal_plain_forward(siglip, scene_images):
    from transformers import SiglipModel, SiglipProcessor

    processor = SiglipProcessor.from_pretrained(siglip)
    model = SiglipModel.from_pretrained(siglip).eval()
    inputs = processor(text=LABELS, images=scene_images[1], return_tensors="pt", padding="max_length", max_length=64)
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

"""The cheaper training passes give what the plain pass gives, values and gradients (cross_passes.py)."""

from __future__ import annotations

import pytest
import torch

from mmstudio.models.base import Task
from mmstudio.training.blank import build_model
from mmstudio.training.cross_passes import _cross_projections, keys_once_per_image, length_groups
from mmstudio.training.objectives import ItmObjective
from mmstudio.world.vocab import all_words


@pytest.fixture(scope="module")
def retrieval():
    model, processor = build_model(Task.ITM, sorted(all_words()), "tiny", seed=3)
    return model.eval(), processor.tokenizer  # no dropout: two passes must see the same network


def _texts(tokenizer):
    texts = ["a red circle", "a large blue star , a small green square , a large red triangle",
             "a star", "a small yellow circle , a large purple square", "a blue square", "a green circle"] * 2
    enc = tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
    return enc["input_ids"], enc["attention_mask"]


def _image_embeds(model, images: int, seed: int = 0):
    vision = model.config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1
    return torch.randn(images, tokens, vision.hidden_size, generator=torch.Generator().manual_seed(seed))


def _grads(model, embeds):
    return [embeds.grad.clone()] + [p.grad.clone() for p in model.text_encoder.parameters() if p.grad is not None]


def test_itm_pass_with_keys_once_per_image_and_length_groups_equals_the_plain_pass(retrieval):
    model, tokenizer = retrieval
    assert len(_cross_projections(model.text_encoder)) == 2 * model.config.text_config.num_hidden_layers
    ids, mask = _texts(tokenizer)
    pair_image = torch.tensor([0, 1, 2, 3, 0, 0, 1, 2, 3, 3, 1, 0])
    embeds = _image_embeds(model, 4).requires_grad_(True)

    model.zero_grad()
    image_mask = torch.ones(len(ids), embeds.shape[1], dtype=torch.long)
    hidden = model.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=embeds[pair_image],
                                encoder_attention_mask=image_mask)[0]
    plain = model.itm_head(hidden[:, 0, :])
    plain.square().sum().backward()
    plain_grads = _grads(model, embeds)

    embeds.grad = None
    model.zero_grad()
    cheap = ItmObjective(model)._itm_logits(embeds, pair_image, ids, mask)
    cheap.square().sum().backward()

    torch.testing.assert_close(cheap, plain, atol=1e-5, rtol=1e-4)
    for got, want in zip(_grads(model, embeds), plain_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_the_projections_are_plain_again_after_the_pass(retrieval):
    model, _ = retrieval
    keys = set(model.state_dict())
    with keys_once_per_image(model.text_encoder, _image_embeds(model, 2)) as images:
        assert images(torch.tensor([0, 1, 1])).shape[0] == 3
    assert set(model.state_dict()) == keys
    layer = model.text_encoder.encoder.layer[0].crossattention.self
    assert "forward" not in vars(layer.key) and "forward" not in vars(layer.value)


def test_an_encoder_of_another_layout_gets_the_copied_features():
    embeds = torch.arange(12.0).reshape(3, 2, 2)
    with keys_once_per_image(torch.nn.Linear(2, 2), embeds) as images:
        torch.testing.assert_close(images(torch.tensor([2, 0])), embeds[[2, 0]])


def test_length_groups_cover_every_row_once_shortest_first():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    groups = length_groups(mask, groups=2)
    assert sorted(torch.cat(groups).tolist()) == [0, 1, 2, 3, 4]
    lengths = [mask[g].sum(dim=1).tolist() for g in groups]
    assert max(lengths[0]) <= min(lengths[1])
    assert len(length_groups(mask[:1], groups=4)) == 1

"""Cheaper training passes of a text encoder over image features, with the plain pass's outputs.

The retrieval stage sends about 420 texts a batch through BLIP's text encoder with cross-attention, six or
seven for each of its 64 images (caption, hard negatives, mined pairs, partial descriptions). The plain pass
copies an image's patch features once for each text and projects every copy to cross-attention keys and
values: 85 % of that projection work is the same rows again. Here each image's keys and values are projected
once and each text is handed its image's rows.

Texts are also run in groups of similar length, each padded only to its own longest: a retrieval batch mixes
captions of 6 to 21 tokens with partial descriptions mostly of 5 to 9, about half of it padding. Padding is
masked out of attention, so a text's output does not depend on it.

Both only reorder work: tests/test_cross_passes.py checks the outputs and gradients against the plain pass.
Together they make a retrieval step 5-10 % quicker on a 2-core CPU (bench/train_step.py: 0.62-0.66 -> 0.59-0.60
s, batch 64), either one alone about as much; small next to the step, whose time is mostly the vision pass and
the fused text pass's own work, not the repeated rows.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

LENGTH_GROUPS = 4  # more groups pad less but run more, smaller passes: 4 was the quickest of 1, 3, 4, 6


def length_groups(attention_mask: torch.Tensor, groups: int = LENGTH_GROUPS) -> list[torch.Tensor]:
    """Row indices in up to `groups` runs of similar length, shortest first (right-padded masks)."""
    order = torch.argsort(attention_mask.sum(dim=1), stable=True)
    return [chunk for chunk in torch.tensor_split(order, min(groups, len(order))) if len(chunk)]


def _cross_projections(text_encoder: nn.Module) -> list[nn.Module]:
    """The key and value projections of every cross-attention layer (BLIP's text encoder and decoder)."""
    layers = getattr(getattr(text_encoder, "encoder", None), "layer", None) or []
    found = []
    for layer in layers:
        attention = getattr(getattr(layer, "crossattention", None), "self", None)
        if attention is None or not hasattr(attention, "key") or not hasattr(attention, "value"):
            return []  # another layout: the caller's plain pass is the safe one
        found += [attention.key, attention.value]
    return found


@contextmanager
def keys_once_per_image(text_encoder: nn.Module, image_embeds: torch.Tensor, *, once: bool = True
                        ) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Yields `images(index)`: what to pass as `encoder_hidden_states` for texts whose images are
    `image_embeds[index]`. While open, the encoder's cross-attention key and value projections run once on
    `image_embeds` (one row per image, on first use) and give each text its image's rows; an encoder of
    another layout (or `once` off: the plain pass, bench/train_step.py) gets the copied features."""
    projections = _cross_projections(text_encoder) if once else []
    if not projections:
        yield lambda index: image_embeds[index]
        return
    chosen: dict[str, torch.Tensor] = {}
    projected: dict[int, torch.Tensor] = {}

    def once(module: nn.Module):
        def forward(_placeholder: torch.Tensor) -> torch.Tensor:
            if id(module) not in projected:
                projected[id(module)] = type(module).forward(module, image_embeds)
            return projected[id(module)][chosen["index"]]
        return forward

    for module in projections:
        module.forward = once(module)  # an instance attribute: nn.Module's call finds it before the class's
    try:
        def images(index: torch.Tensor) -> torch.Tensor:
            chosen["index"] = index
            # Only the projections above read it, and they read the real features: no copy is made.
            return image_embeds.new_zeros(()).expand(len(index), *image_embeds.shape[1:])
        yield images
    finally:
        for module in projections:
            del module.forward

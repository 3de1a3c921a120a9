"""An auxiliary pre-training signal for the vision encoder: what object covers each patch.

Shapes World knows every object's box, so each patch of the ViT's grid gets a
label (color, shape, size, or background) and a small linear head learns to read
them from the patch features. This teaches the encoder objects far faster than
the caption loss alone, and it is where attention maps get their grounding. The
head is training scaffolding: it is never saved with the model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmstudio.world.vocab import COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES, SIZES

ATTRIBUTES = {
    "color": (*COLORS, *EXTRA_COLORS),
    "shape": (*SHAPES, *EXTRA_SHAPES),
    "size": SIZES,
}


def patch_labels(objects: Sequence[dict], width: float, height: float, side: int) -> np.ndarray:
    """(3, side * side) int64 labels per attribute; 0 is background, k + 1 is the k-th value.

    A patch belongs to the object whose box holds the patch's center (the
    nearest object center when boxes overlap); unknown values count as background.
    """
    labels = np.zeros((3, side * side), dtype=np.int64)
    cy, cx = np.meshgrid((np.arange(side) + 0.5) * height / side, (np.arange(side) + 0.5) * width / side,
                         indexing="ij")
    cx, cy = cx.ravel(), cy.ravel()
    best = np.full(side * side, np.inf)
    for obj in objects:
        x0, y0, x1, y1 = obj["bbox"]
        inside = (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
        distance = np.hypot(cx - (x0 + x1) / 2, cy - (y0 + y1) / 2)
        take = inside & (distance < best)
        best[take] = distance[take]
        for row, (attribute, values) in enumerate(ATTRIBUTES.items()):
            value = obj.get(attribute)
            labels[row, take] = values.index(value) + 1 if value in values else 0
    return labels


class GroundingHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(hidden, len(values) + 1) for values in ATTRIBUTES.values())

    def forward(self, image_embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """image_embeds (B, 1 + P, D) with [CLS] first; labels (B, 3, P). Mean cross-entropy over attributes."""
        patches = image_embeds[:, 1:, :]
        losses = [F.cross_entropy(head(patches).flatten(0, 1).float(), labels[:, i].flatten())
                  for i, head in enumerate(self.heads)]
        return torch.stack(losses).mean()

"""CLIP: image-text similarity, zero-shot labels, search embeddings, and a map per text.

CLIP (openai/clip-vit-base-patch32 and kin) embeds with its [CLS] token, so a text's map (dual_encoder.py)
is the [CLS] row of each vision layer's gradient-weighted attention. Probabilities are the softmax over the
texts of one call of `logit_scale * cosine`, exactly what the zero-shot-image-classification pipeline reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from mmstudio.models.base import AdapterFactory, Task
from mmstudio.models.common import architecture_names, check_token_ids
from mmstudio.models.dual_encoder import DualEncoderAdapter

ARCHITECTURE = "CLIPModel"


def accepts(config: dict) -> bool:
    return config.get("model_type") == "clip" and ARCHITECTURE in (architecture_names(config) or [ARCHITECTURE])


def tasks_of(config: dict) -> frozenset[Task]:
    return frozenset({Task.ITM}) if accepts(config) else frozenset()


class ClipAdapter(DualEncoderAdapter):
    family: ClassVar[str] = "clip"
    loads = ARCHITECTURE
    kind = "a CLIP model"

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 cache_size: int = 256):
        super().__init__(model, tokenizer, image_processor, name=name, path=path, dtype=dtype, cache_size=cache_size)
        text = model.config.text_config
        check_token_ids(path, {k: getattr(text, k, None) for k in ("bos_token_id", "eos_token_id")},
                        text.vocab_size, where="config.json text_config")

    def embed_pixels(self, pixels, output_attentions: bool = False):
        out = self.model.vision_model(pixel_values=pixels, output_attentions=output_attentions)
        embeds = self.model.visual_projection(out[1])
        return (embeds, out.attentions) if output_attentions else embeds

    def embed_tokens(self, encoding):
        pooled = self.model.text_model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"])[1]
        return self.model.text_projection(pooled)

    def probabilities(self, cosine: np.ndarray) -> np.ndarray:
        torch = self._torch
        scale = float(self.model.logit_scale.detach().float().exp())
        return torch.softmax(torch.from_numpy(cosine * scale).float(), dim=0).numpy()

    def evidence_rows(self, weighted):
        return weighted[0, :, 0, 1:]  # the [CLS] row, over the patches


FACTORY = AdapterFactory(family="clip", accepts=accepts, load=ClipAdapter.load, tasks_of=tasks_of,
                         notes="CLIP: image-text similarity, zero-shot labels, search")

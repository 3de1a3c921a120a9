"""SigLIP (and SigLIP 2 at a fixed resolution): image-text matching, zero-shot labels, search, a map per text.

SigLIP was trained with a sigmoid loss: each text's probability is `sigmoid(logit_scale * cosine +
logit_bias)`, the image and that text alone, not a softmax over the texts asked together. A label set of one
is as meaningful as one of fifty, and two true labels can both be near 1. Texts are padded to 64 tokens,
as the model was trained and as the zero-shot-image-classification pipeline feeds them.

The vision tower has no [CLS] token: an attention-pooling head reads every patch token of the last layer,
so a text's map (dual_encoder.py) averages each layer's gradient-weighted attention over all query rows.
google/siglip-* and the fixed-resolution google/siglip2-* checkpoints are `SiglipModel`s; SigLIP 2's
NaFlex checkpoints (`Siglip2Model`: each image keeps its aspect ratio, as a grid of at most
`max_num_patches` patches, padded) run through `Siglip2Adapter`, whose maps take each image's own grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from mmstudio.errors import ModelLoadError
from mmstudio.models.base import AdapterFactory, Task
from mmstudio.models.common import architecture_names
from mmstudio.models.dual_encoder import DualEncoderAdapter

ARCHITECTURE = "SiglipModel"
NAFLEX = "Siglip2Model"
TEXT_LENGTH = 64  # SigLIP's training text length: shorter texts are padded to it
ARCHITECTURE_OF = {"siglip": ARCHITECTURE, "siglip2": NAFLEX}


def accepts(config: dict) -> bool:
    arch = ARCHITECTURE_OF.get(config.get("model_type"))
    return arch is not None and arch in (architecture_names(config) or [arch])


def tasks_of(config: dict) -> frozenset[Task]:
    return frozenset({Task.ITM}) if accepts(config) else frozenset()


def _load(resolved, options, **init):
    cls = Siglip2Adapter if resolved.config.get("model_type") == "siglip2" else SiglipAdapter
    return cls.load(resolved, options, **init)


class SiglipAdapter(DualEncoderAdapter):
    family: ClassVar[str] = "siglip"
    loads = ARCHITECTURE
    kind = "a SigLIP model"
    labels_alone = True

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 cache_size: int = 256):
        if not getattr(model.config.vision_config, "vision_use_head", True):
            raise ModelLoadError(f"{path}: this SigLIP vision tower has no pooling head (a VLM's image encoder): "
                                 "it gives no image embedding to match texts with")
        super().__init__(model, tokenizer, image_processor, name=name, path=path, dtype=dtype, cache_size=cache_size)
        self.text_length = min(TEXT_LENGTH, self.max_text)

    def embed_pixels(self, pixels, output_attentions: bool = False):
        out = self.model.vision_model(pixel_values=pixels, output_attentions=output_attentions)
        return (out.pooler_output, out.attentions) if output_attentions else out.pooler_output

    def tokenize(self, texts: Sequence[str]):
        return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.text_length,
                              return_tensors="pt")

    def embed_tokens(self, encoding):
        # SigLIP's tokenizer gives no attention mask (the model was trained on padded texts); a SigLIP 2
        # (Gemma) tokenizer gives one. The text tower takes what the tokenizer gives, as SiglipModel does.
        given = {k: encoding[k] for k in ("input_ids", "attention_mask") if k in encoding}
        return self.model.text_model(**given).pooler_output

    def probabilities(self, cosine: np.ndarray) -> np.ndarray:
        scale = float(self.model.logit_scale.detach().float().exp())
        bias = float(self.model.logit_bias.detach().float().reshape(-1)[0])
        return 1.0 / (1.0 + np.exp(-(cosine.astype(np.float64) * scale + bias)))

    def evidence_rows(self, weighted):
        return weighted[0].mean(dim=1)  # (H, patches): every patch token feeds the pooling head


class Siglip2Adapter(SiglipAdapter):
    """SigLIP 2 NaFlex: patches of the image at its own aspect ratio, padded to the model's most patches."""

    loads = NAFLEX
    kind = "a SigLIP 2 model"
    vision_batches = False  # pictures of other aspect ratios have other grids: embedded one by one, cached apart

    def image_geometry(self) -> tuple[int, int]:
        vision = self.model.config.vision_config
        side = int(round(vision.num_patches ** 0.5))  # the grid of a square image
        return side * vision.patch_size, vision.patch_size

    def pixel_values(self, images):
        inputs = self.image_processor(images=list(images), return_tensors="pt")
        return {"pixel_values": inputs["pixel_values"].to(self.device, self.dtype),
                "pixel_attention_mask": inputs["pixel_attention_mask"].to(self.device),
                "spatial_shapes": inputs["spatial_shapes"].to(self.device)}

    def embed_pixels(self, pixels, output_attentions: bool = False):
        out = self.model.vision_model(**pixels, output_attentions=output_attentions)
        return (out.pooler_output, out.attentions) if output_attentions else out.pooler_output

    def patch_grid(self, pixels, tokens: int) -> tuple[int, int]:
        rows, cols = (int(v) for v in pixels["spatial_shapes"][0])
        return rows, cols


FACTORY = AdapterFactory(family="siglip", accepts=accepts, load=_load, tasks_of=tasks_of,
                         notes="SigLIP, SigLIP 2 (fixed resolution and NaFlex): image-text matching, zero-shot "
                               "labels, search")

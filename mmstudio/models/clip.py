"""CLIP: image-text similarity, zero-shot labels, search embeddings, and a map per text.

CLIP (openai/clip-vit-base-patch32 and kin) has two towers and no fusion, so
"where it looked" for a text is gradient-weighted attention of the vision
tower: for each layer, the [CLS] row of attention times the positive part of
the gradient of the image-text similarity (as in Chefer et al. and LAVIS'
Grad-CAM). Probabilities are the softmax over the texts of one call of
`logit_scale * cosine`, exactly what the zero-shot-image-classification
pipeline reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from PIL import Image

from mmstudio.attention import AttentionStack, patches_to_grid
from mmstudio.models.adapter import AdapterBase
from mmstudio.models.base import AdapterFactory, MatchResult, Task
from mmstudio.models.common import architecture_names, check_token_ids

ARCHITECTURE = "CLIPModel"


def accepts(config: dict) -> bool:
    return config.get("model_type") == "clip" and ARCHITECTURE in (architecture_names(config) or [ARCHITECTURE])


def tasks_of(config: dict) -> frozenset[Task]:
    return frozenset({Task.ITM}) if accepts(config) else frozenset()


class ClipAdapter(AdapterBase):
    family: ClassVar[str] = "clip"
    TASKS = frozenset({Task.ITM})
    loads = ARCHITECTURE
    kind = "a CLIP model"
    does = "itm (matching)"
    load_arguments = {"attn_implementation": "eager"}  # the fused kernels return no attention weights

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 cache_size: int = 256):
        # The cache holds projected image embeddings, by pixels.
        super().__init__(model, tokenizer, image_processor, name=name, path=path, dtype=dtype, cache_size=cache_size)
        text = model.config.text_config
        check_token_ids(path, {k: getattr(text, k, None) for k in ("bos_token_id", "eos_token_id")},
                        text.vocab_size, where="config.json text_config")
        self.max_text = text.max_position_embeddings

    # -------------------------------------------------------------- features

    def _image_embeds(self, images: Sequence[Image.Image]):
        """(B, P) projected image embeddings (not normalised), cached by pixels."""
        return self.cached_vision(
            images, lambda pixels: self.model.visual_projection(self.model.vision_model(pixel_values=pixels)[1]))

    def _text_embeds(self, texts: Sequence[str]):
        torch = self._torch
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_text,
                             return_tensors="pt").to(self.device)
        with torch.inference_mode():
            pooled = self.model.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[1]
            return self.model.text_projection(pooled)  # (T, P)

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(B, P) unit-length image embeddings (for search)."""
        return _unit(self._image_embeds(images))

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """(T, P) unit-length text embeddings."""
        return _unit(self._text_embeds(texts))

    # ----------------------------------------------------------------- match

    def score_texts(self, image: Image.Image, texts: Sequence[str], *, attention: bool = False) -> list[MatchResult]:
        torch = self._torch
        if not texts:
            return []
        text_feats = self.text_features(texts)  # (T, P)
        cams = None
        if attention:
            image_feat, cams = self._with_gradcam(image, torch.from_numpy(text_feats).to(self.device, self.dtype))
        else:
            image_feat = self.image_features([image])[0]
        cosine = text_feats @ image_feat  # (T,)
        scale = float(self.model.logit_scale.detach().float().exp())
        probs = torch.softmax(torch.from_numpy(cosine * scale).float(), dim=0).numpy()
        layers = tuple(range(self.model.config.vision_config.num_hidden_layers))
        results = []
        for t, text in enumerate(texts):
            stack = None
            if cams is not None:
                stack = AttentionStack((text,), cams[t][None], layers, layers[-1])
            results.append(MatchResult(text=text, itm=float(probs[t]), itc=float(cosine[t]), attention=stack,
                                       label_probability=float(probs[t])))
        return results

    def _with_gradcam(self, image: Image.Image, text_feats):
        """The unit image embedding (P,), and per text the maps (T, L, H, rows, cols) of every vision layer."""
        torch = self._torch
        with torch.enable_grad():
            out = self.model.vision_model(pixel_values=self.pixel_values([image]), output_attentions=True)
            attentions = out.attentions  # L x (1, H, 1 + N, 1 + N)
            embed = self.model.visual_projection(out[1])[0]
            unit = embed / embed.norm()
            similarity = text_feats @ unit  # (T,)
            cams = []
            for t in range(similarity.shape[0]):
                grads = torch.autograd.grad(similarity[t], attentions, retain_graph=True)
                per_layer = [(a.detach() * g.clamp(min=0))[0, :, 0, :] for a, g in zip(attentions, grads)]
                cams.append(torch.stack(per_layer).float().cpu().numpy())  # (L, H, 1 + N)
        return unit.detach().float().cpu().numpy(), patches_to_grid(np.stack(cams)).astype(np.float32)


def _unit(embeds) -> np.ndarray:
    import torch

    return torch.nn.functional.normalize(embeds.float(), dim=-1).cpu().numpy()


FACTORY = AdapterFactory(family="clip", accepts=accepts, load=ClipAdapter.load, tasks_of=tasks_of,
                         notes="CLIP: image-text similarity, zero-shot labels, search")

"""Two-tower image-text models (CLIP, SigLIP): what their adapters share.

They embed images and texts apart and compare the two vectors, with no fusion, so "where it looked" for a
text is gradient-weighted attention of the vision tower (Chefer et al., LAVIS' Grad-CAM): per layer, the
attention rows that make the image embedding, times the positive part of the gradient of the image-text
similarity. A family says how it embeds, how it reads a similarity as a probability (CLIP: a softmax over
the texts of one call; SigLIP: a sigmoid of each text alone), and which attention rows make its embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from PIL import Image

from mmstudio.attention import AttentionStack, grid_shape
from mmstudio.models.adapter import AdapterBase
from mmstudio.models.base import MatchResult, Task


class DualEncoderAdapter(AdapterBase):
    TASKS = frozenset({Task.ITM})
    does = "itm (matching)"
    load_arguments: ClassVar[dict] = {"attn_implementation": "eager"}  # the fused kernels return no weights

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 cache_size: int = 256):
        # The cache holds projected image embeddings, by pixels.
        super().__init__(model, tokenizer, image_processor, name=name, path=path, dtype=dtype, cache_size=cache_size)
        self.max_text = model.config.text_config.max_position_embeddings

    # ---------------------------------------------------------- the family's

    def embed_pixels(self, pixels, output_attentions: bool = False):
        """(B, P) image embeddings, not normalised; with output_attentions also the vision tower's attentions."""
        raise NotImplementedError

    def tokenize(self, texts: Sequence[str]):
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_text,
                              return_tensors="pt")

    def embed_tokens(self, encoding):
        """(T, P) text embeddings, not normalised."""
        raise NotImplementedError

    def probabilities(self, cosine: np.ndarray) -> np.ndarray:
        """Per text, the probability that it fits the image, from the cosine similarities of one call."""
        raise NotImplementedError

    def evidence_rows(self, weighted):
        """(H, patches) of one layer's gradient-weighted attention (1, H, tokens, tokens): the rows that make
        the image embedding, over the patch tokens only."""
        raise NotImplementedError

    # -------------------------------------------------------------- features

    def _image_embeds(self, images: Sequence[Image.Image]):
        return self.cached_vision(images, self.embed_pixels)

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(B, P) unit-length image embeddings (for search)."""
        return _unit(self._image_embeds(images))

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """(T, P) unit-length text embeddings."""
        with self._torch.inference_mode():
            return _unit(self.embed_tokens(self.tokenize(texts).to(self.device)))

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
        probs = self.probabilities(cosine)
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
        pixels = self.pixel_values([image])
        with torch.enable_grad():
            embeds, attentions = self.embed_pixels(pixels, output_attentions=True)
            embed = embeds[0]
            unit = embed / embed.norm()
            similarity = text_feats @ unit  # (T,)
            cams = []
            for t in range(similarity.shape[0]):
                grads = torch.autograd.grad(similarity[t], attentions, retain_graph=True)
                per_layer = [self.evidence_rows(a.detach() * g.clamp(min=0)) for a, g in zip(attentions, grads)]
                cams.append(torch.stack(per_layer).float().cpu().numpy())  # (L, H, patches)
        cams = np.stack(cams)
        rows, cols = self.patch_grid(pixels, cams.shape[-1])
        cams = cams[..., :rows * cols]  # patch tokens past the grid are padding (SigLIP 2's NaFlex)
        return unit.detach().float().cpu().numpy(), cams.reshape(*cams.shape[:-1], rows, cols).astype(np.float32)

    def patch_grid(self, pixels, tokens: int) -> tuple[int, int]:
        """(rows, cols) of one image's patches among `tokens` patch tokens: a square of them all, by default."""
        return grid_shape(tokens)


def _unit(embeds) -> np.ndarray:
    import torch

    return torch.nn.functional.normalize(embeds.float(), dim=-1).cpu().numpy()

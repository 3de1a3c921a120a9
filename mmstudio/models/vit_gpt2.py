"""Vision encoder-decoder captioning (ViT-GPT2 and kin): captions with per-token cross-attention maps.

Any `VisionEncoderDecoderModel` whose encoder is a ViT-style patch encoder
([CLS] + a square patch grid) works; nlpconnect/vit-gpt2-image-captioning is
the well-known one. The model is loaded with eager attention, so that the
decoder's cross-attention weights are returned. Captions are what the model's
own `generate` writes with its generation_config and the user's settings; the encoder pass is cached
per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

from PIL import Image

from mmstudio.errors import ModelLoadError
from mmstudio.models.adapter import AdapterBase
from mmstudio.models.base import (
    AdapterFactory,
    CancelCheck,
    CaptionResult,
    GenerationOptions,
    Task,
    never_cancelled,
)
from mmstudio.models.common import architecture_names, check_token_ids, cut_at, stack_from, to_numpy
from mmstudio.models.generation import seeded

ARCHITECTURE = "VisionEncoderDecoderModel"


def accepts(config: dict) -> bool:
    return config.get("model_type") == "vision-encoder-decoder" or ARCHITECTURE in architecture_names(config)


def tasks_of(config: dict) -> frozenset[Task]:
    return frozenset({Task.CAPTION}) if accepts(config) else frozenset()


class VisionEncoderDecoderAdapter(AdapterBase):
    family: ClassVar[str] = "vit-gpt2"
    TASKS = frozenset({Task.CAPTION})
    loads = ARCHITECTURE
    kind = "a captioning model"
    load_arguments = {"attn_implementation": "eager"}  # the fused kernels return no attention weights

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 cache_size: int = 64):
        generation = model.generation_config
        config = model.config
        self.start_id = _first(generation.decoder_start_token_id, config.decoder_start_token_id,
                               config.decoder.bos_token_id)
        self.eos_id = _first(generation.eos_token_id, config.eos_token_id, config.decoder.eos_token_id)
        self.pad_id = _first(generation.pad_token_id, config.pad_token_id, self.eos_id)
        if self.start_id is None:
            raise ModelLoadError(f"{path}: the config names no decoder_start_token_id, so captions cannot start")
        check_token_ids(path, {"decoder_start_token_id": self.start_id, "eos_token_id": self.eos_id,
                               "pad_token_id": self.pad_id}, config.decoder.vocab_size,
                        where="config.json or generation_config.json")
        super().__init__(model, tokenizer, image_processor, name=name, path=path, dtype=dtype, cache_size=cache_size)

    def architecture(self) -> str:
        config = self.model.config
        return f"{ARCHITECTURE} ({config.encoder.model_type} + {config.decoder.model_type})"

    def image_geometry(self) -> tuple[int, int]:
        encoder = self.model.config.encoder
        return getattr(encoder, "image_size", 224), getattr(encoder, "patch_size", 16)

    def encoder_states(self, images: Sequence[Image.Image]):
        """(B, 1 + patches, D) encoder outputs, from the cache where the same pixels were seen."""
        return self.cached_vision(images, lambda pixels: self.model.encoder(pixel_values=pixels).last_hidden_state)

    def caption(
        self,
        images: Sequence[Image.Image],
        *,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),
        cancel: CancelCheck = never_cancelled,
    ) -> list[CaptionResult]:
        from transformers.modeling_outputs import BaseModelOutput

        torch = self._torch
        cancel()
        states = self.encoder_states(images)  # (B, N, D)
        given = self.prompt_ids(generation.prompt)  # the decoder's first words after its start token
        config = self.generation_config(generation)
        with torch.inference_mode():
            start = torch.tensor([[self.start_id, *given]] * len(images), dtype=torch.long, device=states.device)
            seeded(torch, generation, config)
            sequences = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=states),
                decoder_input_ids=start,
                generation_config=config,
            )  # (B, 1 + prompt + new)
            cancel()
            cross = None
            if attention:
                # Teacher-forced pass: the map of token t is the attention of the query that produced it (t - 1).
                out = self.model(encoder_outputs=(states,), decoder_input_ids=sequences, output_attentions=True)
                cross = to_numpy(out.cross_attentions)  # L x (B, H, T, 1 + patches)
        special = set(self.tokenizer.all_special_ids)
        results = []
        for b in range(len(images)):
            ids = sequences[b].tolist()[1:]
            ids = cut_at(ids, {self.eos_id, self.pad_id}, start=len(given))
            words = [i for i, t in enumerate(ids) if t not in special and i >= len(given)]
            tokens = tuple(self.tokenizer.decode([ids[i]]).strip() or "␣" for i in words)
            stack = None
            if cross is not None:
                try:
                    stack = stack_from(cross, b, words, tokens, "mean")
                except ValueError:  # an encoder whose tokens are not [CLS] + a square grid (DeiT, Swin): no map
                    stack = None
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            results.append(CaptionResult(caption=text, tokens=tokens, attention=stack,
                                         prompt=self.tokenizer.decode(given).strip() if given else ""))
        return results



def _first(*values):
    for value in values:
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return value  # check_token_ids judges it: a config may hold anything here
    return None


FACTORY = AdapterFactory(family="vit-gpt2", accepts=accepts, load=VisionEncoderDecoderAdapter.load,
                         tasks_of=tasks_of, notes="VisionEncoderDecoderModel (ViT-GPT2): caption")

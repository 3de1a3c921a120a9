"""BLIP: captioning, visual question answering and image-text retrieval.

One adapter serves the three BLIP heads of transformers; which tasks a
checkpoint does follows from its `architectures`. Decoding reproduces what the
heads' own `generate` does, split so that the vision pass is cached per image
and the evidence (cross-attention, Grad-CAM) comes from the same weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from PIL import Image

from mmstudio.attention import AttentionStack, patches_to_grid
from mmstudio.errors import ModelLoadError, UnsupportedTaskError
from mmstudio.imaging import content_key
from mmstudio.models.base import (
    AdapterFactory,
    AnswerResult,
    CancelCheck,
    CaptionResult,
    GenerationOptions,
    LoadOptions,
    MatchResult,
    ModelInfo,
    Task,
    never_cancelled,
)
from mmstudio.models.common import Architectures, cut_at, load_parts, stack_from, to_numpy
from mmstudio.models.loading import ResolvedModel
from mmstudio.models.vision_cache import VisionCache

ARCHITECTURES = {
    "BlipForConditionalGeneration": Task.CAPTION,
    "BlipForQuestionAnswering": Task.VQA,
    "BlipForImageTextRetrieval": Task.ITM,
}
FAMILY = Architectures("blip", ARCHITECTURES)
# Optional per-checkpoint hints written by our trainer: measured best layers for evidence maps.
HINTS_FILE = "mmstudio.json"


def load_image_processor(path):
    """The PIL-backed BLIP image processor (transformers 5 prefers a torchvision one we do not need)."""
    import transformers

    cls = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
    return cls.from_pretrained(path)


def processor_geometry(image_processor) -> tuple[int, int, tuple, tuple]:
    """(side, PIL resample filter, mean, std) of a square-resizing BLIP image processor."""
    size = image_processor.size
    side = int(size["height"]) if hasattr(size, "__getitem__") else int(size)
    resample = int(getattr(image_processor, "resample", 3))  # PIL.Image.BICUBIC
    return side, resample, tuple(image_processor.image_mean), tuple(image_processor.image_std)


class BlipAdapter:
    family: ClassVar[str] = "blip"

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 hints: dict | None = None, cache_size: int = 64):
        """Wrap parts already loaded (the trainer evaluates its in-memory model this way)."""
        import torch

        arch = type(model).__name__
        if arch not in ARCHITECTURES:
            raise ModelLoadError(f"{path}: not a BLIP caption, VQA or retrieval checkpoint")
        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.task = ARCHITECTURES[arch]
        param = next(model.parameters())
        self.device, self.dtype = str(param.device), param.dtype
        text_config = model.config.text_config
        self.bos_id = text_config.bos_token_id
        self.sep_id = text_config.sep_token_id
        self.pad_id = text_config.pad_token_id
        self.text_layers = text_config.num_hidden_layers
        vision = model.config.vision_config
        side = vision.image_size // vision.patch_size
        self.hints = dict(hints or {})
        self.cache: VisionCache = VisionCache(cache_size)
        self.info = ModelInfo(
            name=name,
            path=Path(path),
            family=self.family,
            architecture=arch,
            tasks=frozenset({self.task}),
            device=self.device,
            dtype=dtype,
            grid=(side, side),
            image_size=vision.image_size,
            parameters=sum(p.numel() for p in model.parameters()),
        )

    @classmethod
    def load(cls, resolved: ResolvedModel, options: LoadOptions, *, cache_size: int = 64) -> "BlipAdapter":
        import transformers

        arch = FAMILY.of(resolved.config)
        if arch is None:
            raise ModelLoadError(f"{resolved.path}: not a BLIP caption, VQA or retrieval checkpoint")
        model, tokenizer, image_processor = load_parts(getattr(transformers, arch), resolved, options, what=arch,
                                                       image_processor=load_image_processor)
        return cls(model, tokenizer, image_processor, name=resolved.name, path=resolved.path,
                   dtype=options.dtype, hints=read_hints(resolved.path), cache_size=cache_size)

    # ---------------------------------------------------------------- shared

    def close(self) -> None:
        self.cache.clear()
        self.model = None

    def pixel_values(self, images: Sequence[Image.Image]):
        batch = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return batch.to(self.device, self.dtype)

    def image_embeds(self, images: Sequence[Image.Image]):
        """(B, 1 + patches, D) vision features, from the cache where the same pixels were seen."""
        torch = self._torch

        def compute(indices: list[int]):
            with torch.inference_mode():
                out = self.model.vision_model(pixel_values=self.pixel_values([images[i] for i in indices]))[0]
            return list(out.split(1))

        keys = [content_key(image) for image in images]
        return torch.cat(self.cache.get_many(keys, compute))

    def _require(self, task: Task) -> None:
        if task != self.task:
            raise UnsupportedTaskError(
                f"{self.info.name} is a {self.info.architecture} checkpoint: it does {self.task.value}, "
                f"not {task.value}"
            )

    def _layer_hint(self, key: str, fallback):
        return self.hints.get(key, fallback)

    def _generate(self, input_ids, encoder_hidden_states, encoder_attention_mask, generation: GenerationOptions):
        return self.model.text_decoder.generate(
            input_ids=input_ids,
            eos_token_id=self.sep_id,
            pad_token_id=self.pad_id,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            max_new_tokens=generation.max_new_tokens,
            num_beams=generation.num_beams,
            do_sample=False,
        )

    def _word_positions(self, ids: list[int]) -> list[int]:
        special = set(self.tokenizer.all_special_ids)
        return [i for i, t in enumerate(ids) if t not in special]

    # --------------------------------------------------------------- caption

    def caption(
        self,
        images: Sequence[Image.Image],
        *,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),
        cancel: CancelCheck = never_cancelled,
    ) -> list[CaptionResult]:
        self._require(Task.CAPTION)
        torch = self._torch
        cancel()
        embeds = self.image_embeds(images)  # (B, N, D)
        batch = embeds.shape[0]
        with torch.inference_mode():
            image_mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
            prompt = torch.full((batch, 1), self.bos_id, dtype=torch.long, device=embeds.device)
            sequences = self._generate(prompt, embeds, image_mask, generation)  # (B, 1 + new)
            cancel()
            cross = None
            if attention:
                # Teacher-forced pass: the map of word t is the attention of the query that produced it (t-1).
                out = self.model.text_decoder(
                    input_ids=sequences,
                    encoder_hidden_states=embeds,
                    encoder_attention_mask=image_mask,
                    output_attentions=True,
                )
                cross = to_numpy(out.cross_attentions)  # L x (B, H, T, N)
        results = []
        for b in range(batch):
            ids = sequences[b].tolist()[1:]
            ids = cut_at(ids, {self.sep_id, self.pad_id})
            words = self._word_positions(ids)
            kept = [ids[i] for i in words]
            tokens = tuple(self.tokenizer.convert_ids_to_tokens(kept))
            stack = None
            if cross is not None:
                # ids[i] sits at sequence position i + 1, so query position i is the one that produced it
                stack = stack_from(cross, b, words, tokens, self._layer_hint("caption_layer", "mean"))
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(CaptionResult(caption=text, tokens=tokens, attention=stack))
        return results

    # ------------------------------------------------------------------- VQA

    def answer(
        self,
        image: Image.Image,
        questions: Sequence[str],
        *,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),
    ) -> list[AnswerResult]:
        self._require(Task.VQA)
        torch = self._torch
        if not questions:
            return []
        embeds = self.image_embeds([image])
        enc = self.tokenizer(list(questions), padding=True, return_tensors="pt").to(self.device)
        count = len(questions)
        with torch.inference_mode():
            image_embeds = embeds.expand(count, -1, -1)
            image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=embeds.device)
            encoded = self.model.text_encoder(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_mask,
                output_attentions=attention,
            )
            question_embeds = encoded[0]
            bos = torch.full((count, 1), self.bos_id, dtype=torch.long, device=embeds.device)
            # The padded questions' mask keeps each answer equal to asking that question alone.
            sequences = self._generate(bos, question_embeds, enc["attention_mask"], generation)
            answer_cross = None
            if attention:
                decoded = self.model.text_decoder(
                    input_ids=sequences,
                    encoder_hidden_states=question_embeds,
                    encoder_attention_mask=enc["attention_mask"],
                    output_attentions=True,
                )
                answer_cross = to_numpy(decoded.cross_attentions)  # L x (Q, H, T_ans, T_q)
                question_cross = to_numpy(encoded.cross_attentions)  # L x (Q, H, T_q, N)
        results = []
        for q, question in enumerate(questions):
            ids = cut_at(sequences[q].tolist()[1:], {self.sep_id, self.pad_id})
            answer = self.tokenizer.decode(ids, skip_special_tokens=True)
            q_ids = enc["input_ids"][q][enc["attention_mask"][q].bool()].tolist()
            words = self._word_positions(q_ids)
            q_tokens = tuple(self.tokenizer.convert_ids_to_tokens([q_ids[i] for i in words]))
            q_stack = a_stack = None
            if attention:
                layer = self._layer_hint("vqa_layer", "mean")
                valid = list(range(len(q_ids)))
                everything = stack_from(question_cross, q, valid, tuple(str(i) for i in valid), layer)
                q_stack = everything.select(words)
                q_stack = AttentionStack(q_tokens, q_stack.weights, q_stack.layers, layer)
                # Answer evidence: how much the answer's first step read each question token,
                # times where that token looked in the image.
                reads = np.mean([layer_att[q, :, 0, : len(q_ids)] for layer_att in answer_cross], axis=(0, 1))
                reads = reads / max(float(reads.sum()), 1e-12)
                combined = np.tensordot(reads, everything.weights, axes=(0, 0))[None]  # (1, L, H, rows, cols)
                a_stack = AttentionStack((answer,), combined.astype(np.float32), everything.layers, layer)
            results.append(
                AnswerResult(
                    question=question,
                    answer=answer,
                    question_tokens=q_tokens,
                    question_attention=q_stack,
                    answer_attention=a_stack,
                )
            )
        return results

    # ------------------------------------------------------------------- ITM

    def match(self, image: Image.Image, texts: Sequence[str], *, attention: bool = False) -> list[MatchResult]:
        self._require(Task.ITM)
        torch = self._torch
        if not texts:
            return []
        embeds = self.image_embeds([image])
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        enc = enc.to(self.device)
        count = len(texts)
        model = self.model
        with torch.inference_mode():
            text_only = model.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0]
            image_feat = torch.nn.functional.normalize(model.vision_proj(embeds[:, 0, :]), dim=-1)
            text_feat = torch.nn.functional.normalize(model.text_proj(text_only[:, 0, :]), dim=-1)
            itc = (text_feat @ image_feat.t())[:, 0].float().cpu().numpy()
        if attention:
            itm, cams = self._itm_with_gradcam(embeds, enc)
        else:
            with torch.inference_mode():
                itm = self._itm_logits(embeds.expand(count, -1, -1), enc)
            cams = None
        probs = torch.softmax(itm.detach().float(), dim=-1)[:, 1].cpu().numpy()
        # The retrieval head has no learned ITC temperature: use the one BLIP starts training from (1 / 0.07).
        labels = torch.softmax(torch.from_numpy(itc) * float(np.exp(model.config.logit_scale_init_value)), dim=0)
        results = []
        for t, text in enumerate(texts):
            text_stack = token_stack = None
            if cams is not None:
                ids = enc["input_ids"][t][enc["attention_mask"][t].bool()].tolist()
                words = self._word_positions(ids)
                tokens = tuple(self.tokenizer.convert_ids_to_tokens([ids[i] for i in words]))
                layer = self._gradcam_layer()
                per_token = cams[t][:, :, words]  # (1, H, W, rows, cols)
                per_token = np.moveaxis(per_token, 2, 0)  # (W, 1, H, rows, cols)
                token_stack = AttentionStack(tokens, per_token, (layer,), layer)
                whole = per_token.mean(axis=0, keepdims=True) if len(words) else per_token[:1] * 0
                text_stack = AttentionStack((text,), whole, (layer,), layer)
            results.append(
                MatchResult(text=text, itm=float(probs[t]), itc=float(itc[t]), attention=text_stack,
                            token_attention=token_stack, label_probability=float(labels[t]))
            )
        return results

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(B, P) unit-length ITC embeddings of images (for search and retrieval)."""
        self._require(Task.ITM)
        torch = self._torch
        embeds = self.image_embeds(images)
        with torch.inference_mode():
            feats = torch.nn.functional.normalize(self.model.vision_proj(embeds[:, 0, :]), dim=-1)
        return feats.float().cpu().numpy()

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """(T, P) unit-length ITC embeddings of texts."""
        self._require(Task.ITM)
        torch = self._torch
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
        enc = enc.to(self.device)
        with torch.inference_mode():
            hidden = self.model.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0]
            feats = torch.nn.functional.normalize(self.model.text_proj(hidden[:, 0, :]), dim=-1)
        return feats.float().cpu().numpy()

    def _itm_logits(self, image_embeds, enc):
        torch = self._torch
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        hidden = self.model.text_encoder(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        )[0]
        return self.model.itm_head(hidden[:, 0, :])  # (B, 2)

    def _gradcam_layer(self) -> int:
        # LAVIS uses layer 8 of 12 for BLIP base; our small models store a measured choice.
        return int(self._layer_hint("itm_gradcam_layer", max(0, round(self.text_layers * 0.6) - 1)))

    def _itm_with_gradcam(self, embeds, enc):
        """ITM logits, and per text the Grad-CAM (B, 1, H, T, rows, cols) of one cross-attention layer."""
        torch = self._torch
        layer = self.model.text_encoder.encoder.layer[self._gradcam_layer()].crossattention.self
        captured = []

        def keep_probs(_module, _inputs, output):
            captured.append(output[1])

        handle = layer.register_forward_hook(keep_probs)
        try:
            with torch.enable_grad():
                image_embeds = embeds.clone().expand(enc["input_ids"].shape[0], -1, -1)
                logits = self._itm_logits(image_embeds, enc)
                (grads,) = torch.autograd.grad(logits[:, 1].sum(), captured[0])
        finally:
            handle.remove()
        cam = (captured[0].detach() * grads.clamp(min=0)).float().cpu().numpy()  # (B, H, T, N)
        grid = patches_to_grid(cam)  # (B, H, T, rows, cols)
        return logits.detach(), grid[:, None]


def read_hints(path) -> dict:
    try:
        return json.loads((path / HINTS_FILE).read_text(encoding="utf-8")).get("attention", {})
    except (OSError, ValueError, AttributeError):
        return {}


FACTORY = AdapterFactory(family="blip", accepts=FAMILY.accepts, load=BlipAdapter.load, tasks_of=FAMILY.tasks_of,
                         notes="Salesforce BLIP: caption, VQA and retrieval heads")

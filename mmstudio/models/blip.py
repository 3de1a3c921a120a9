"""BLIP: captioning, visual question answering and image-text retrieval.

One adapter serves the three BLIP heads of transformers; which tasks a
checkpoint does follows from its `architectures`. Decoding reproduces what the
heads' own `generate` does, split so that the vision pass is cached per image
and the evidence (cross-attention, Grad-CAM) comes from the same weights.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar, Iterator, Sequence

import numpy as np
from PIL import Image

from mmstudio.attention import AttentionStack, patches_to_grid
from mmstudio.errors import ModelLoadError
from mmstudio.imaging import content_key
from mmstudio.models.adapter import AdapterBase
from mmstudio.models.base import (
    AdapterFactory,
    AnswerResult,
    CancelCheck,
    CaptionResult,
    GenerationOptions,
    LoadOptions,
    MatchResult,
    Task,
    never_cancelled,
)
from mmstudio.models.common import Architectures, auto_tokenizer, check_token_ids, cut_at, stack_from, to_numpy
from mmstudio.models.generation import generation_config, seeded
from mmstudio.models.hints import read_hints, valid_hints
from mmstudio.models.in_domain import read_in_domain
from mmstudio.models.loading import ResolvedModel

ARCHITECTURES = {
    "BlipForConditionalGeneration": Task.CAPTION,
    "BlipForQuestionAnswering": Task.VQA,
    "BlipForImageTextRetrieval": Task.ITM,
}
FAMILY = Architectures("blip", ARCHITECTURES)


def load_image_processor(path):
    """The PIL-backed BLIP image processor (transformers 5 prefers a torchvision one we do not need)."""
    import transformers

    cls = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
    return cls.from_pretrained(path, trust_remote_code=False)


_FUSED_ATTENTION: dict = {}


def fused_vision_attention(model) -> int:
    """Run the ViT's self-attention through torch's fused `scaled_dot_product_attention`.

    transformers' BlipAttention only has an eager path: it materialises the (B, H, N, N) scores, scales
    them and softmaxes them in separate passes, a third of a base-size ViT's time at 384 px on a CPU.
    The fused kernel computes the same attention without those passes. Only the vision encoder's
    modules of this one model change (their class becomes a subclass); a call that asks for the
    attention weights, or gives a head mask, still takes the eager path. Returns the modules changed.
    """
    from transformers.models.blip import modeling_blip

    eager = getattr(modeling_blip, "BlipAttention", None)
    vision = getattr(model, "vision_model", None)
    if eager is None or vision is None:
        return 0
    if eager not in _FUSED_ATTENTION:
        import torch

        class FusedBlipAttention(eager):
            def forward(self, hidden_states, *args, **kwargs):
                if args or kwargs.get("output_attentions") or kwargs.get("head_mask") is not None \
                        or getattr(self.config, "output_attentions", False):
                    return super().forward(hidden_states, *args, **kwargs)
                bsz, length, dim = hidden_states.shape
                qkv = self.qkv(hidden_states).reshape(bsz, length, 3, self.num_heads, dim // self.num_heads)
                q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale)
                return self.projection(out.transpose(1, 2).reshape(bsz, length, dim)), None

        _FUSED_ATTENTION[eager] = FusedBlipAttention
    fused = _FUSED_ATTENTION[eager]
    needed = ("qkv", "projection", "num_heads", "scale", "dropout", "config")
    changed = 0
    for module in vision.modules():
        if type(module) is eager and all(hasattr(module, name) for name in needed):
            module.__class__ = fused
            changed += 1
    return changed


class CrossAttentionMemo:
    """The text encoder's cross-attention keys and values of recent images, kept by image content.

    They depend only on the image, yet every question (VQA) or batch of texts (ITM) would project the
    image's patch features again in each layer: for a base-size model 24 projections of 577 x 768,
    a third or more of a follow-up question's work. `install` wraps the key and value
    projections of a text encoder's cross-attention; they answer from the memo only inside
    `for_image(key)` and for a batch of one image's features (text batches broadcast against it),
    so every other call (training, Grad-CAM with gradients) computes as before.
    """

    def __init__(self, capacity: int = 4):
        self.capacity = max(0, int(capacity))
        self._entries: OrderedDict[str, dict] = OrderedDict()
        self._active: dict | None = None
        self.installed = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def stored(self) -> list[dict]:
        """Each remembered image's projections (slot -> tensors), oldest first: what a follow-up reuses."""
        return list(self._entries.values())

    @contextlib.contextmanager
    def for_image(self, key: str) -> Iterator[None]:
        if not self.installed or not self.capacity:
            yield
            return
        entry = self._entries.setdefault(key, {})
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        self._active = entry
        try:
            yield
        finally:
            self._active = None

    def install(self, text_model) -> int:
        """Wrap the cross-attention key/value projections of a BLIP text model; returns how many."""
        layers = getattr(getattr(text_model, "encoder", None), "layer", None) or []
        for i, layer in enumerate(layers):
            attention = getattr(getattr(layer, "crossattention", None), "self", None)
            for which in ("key", "value"):
                linear = getattr(attention, which, None)
                if linear is not None:
                    linear.forward = self._remembering(linear.forward, (i, which))
                    self.installed += 1
        return self.installed

    def _remembering(self, compute, slot):
        def forward(states):
            entry = self._active
            if entry is None or states.dim() != 3 or states.shape[0] != 1:
                return compute(states)
            value = entry.get(slot)
            if value is None or value.shape[1] != states.shape[1]:
                value = entry[slot] = compute(states)
            return value

        return forward


def processor_geometry(image_processor) -> tuple[int, int, tuple, tuple]:
    """(side, PIL resample filter, mean, std) of a square-resizing BLIP image processor."""
    size = image_processor.size
    side = int(size["height"]) if hasattr(size, "__getitem__") else int(size)
    resample = int(getattr(image_processor, "resample", 3))  # PIL.Image.BICUBIC
    return side, resample, tuple(image_processor.image_mean), tuple(image_processor.image_std)


class BlipAdapter(AdapterBase):
    family: ClassVar[str] = "blip"
    loads = FAMILY
    checkpoint_kind = "BLIP caption, VQA or retrieval"

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 hints: dict | None = None, cache_size: int = 64):
        """Wrap parts already loaded (the trainer evaluates its in-memory model this way)."""
        arch = type(model).__name__
        if arch not in ARCHITECTURES:
            raise ModelLoadError(f"{path}: not a {self.checkpoint_kind} checkpoint")
        self.task = ARCHITECTURES[arch]
        text_config = model.config.text_config
        self.bos_id = text_config.bos_token_id
        self.sep_id = text_config.sep_token_id
        self.pad_id = text_config.pad_token_id
        check_token_ids(path, {"bos_token_id": self.bos_id, "sep_token_id": self.sep_id,
                               "pad_token_id": self.pad_id}, text_config.vocab_size, where="config.json text_config")
        self.text_layers = text_config.num_hidden_layers
        self.max_text = text_config.max_position_embeddings
        # Installed by `load` on models loaded for inference (see CrossAttentionMemo).
        self.cross_memo = CrossAttentionMemo()
        super().__init__(model, tokenizer, image_processor, name=name, path=path, dtype=dtype, cache_size=cache_size)
        self.hints = valid_hints(hints or {}, self.text_layers, path)

    @property
    def kind(self) -> str:
        return f"a {self.info.architecture} checkpoint"

    def tasks(self) -> frozenset[Task]:
        return frozenset({self.task})  # one head a checkpoint

    @staticmethod
    def load_processing(path) -> tuple:
        return auto_tokenizer(path), load_image_processor(path)

    @classmethod
    def load(cls, resolved: ResolvedModel, options: LoadOptions, *, cache_size: int = 64) -> "BlipAdapter":
        adapter = super().load(resolved, options, cache_size=cache_size)
        fused_vision_attention(adapter.model)
        if options.dtype == "bf16" and adapter.info.device == "cpu":
            from mmstudio.models.cpu_bf16 import pack_blip_vision

            vision = adapter.model.config.vision_config
            pack_blip_vision(adapter.model.vision_model, (vision.image_size // vision.patch_size) ** 2 + 1)
        adapter.hints = valid_hints(read_hints(resolved.path), adapter.text_layers, resolved.path)
        adapter.in_domain_check = read_in_domain(resolved.path, 3 * adapter.model.config.vision_config.hidden_size)
        if hasattr(adapter.model, "text_encoder"):  # VQA and retrieval heads
            adapter.cross_memo.install(adapter.model.text_encoder)
        return adapter

    # ---------------------------------------------------------------- shared

    def world_checkable(self) -> bool:
        return True

    def clear_caches(self) -> None:
        """Forget every image seen: its vision features and its cross-attention keys and values."""
        super().clear_caches()
        self.cross_memo.clear()

    def image_embeds(self, images: Sequence[Image.Image], keys: Sequence[str] | None = None):
        """(B, 1 + patches, D) vision features, from the cache where the same pixels were seen.

        `keys`: the images' content keys, when the caller has them already.
        """
        return self.cached_vision(images, lambda pixels: self.model.vision_model(pixel_values=pixels)[0], keys)

    def _layer_hint(self, key: str, fallback):
        return self.hints.get(key, fallback)

    def _generate(self, input_ids, encoder_hidden_states, encoder_attention_mask, generation: GenerationOptions):
        config = self.generation_config(generation)
        seeded(self._torch, generation, config)
        return self.model.text_decoder.generate(
            input_ids=input_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            generation_config=config,
        )

    def generation_config(self, options: GenerationOptions):
        # As plain BLIP generate(): it runs its text decoder, whose generation config is made from the text
        # config; the folder's generation_config.json (the top-level model's) reaches neither (measured: a
        # saved max_new_tokens=5 still gave 20 tokens), so the same file changes neither's output.
        config = generation_config(options, self.model.text_decoder.generation_config)
        config.eos_token_id, config.pad_token_id = self.sep_id, self.pad_id  # as BLIP's generate() passes them
        return config

    def _encode_texts(self, texts: Sequence[str], longest: int | None = None):
        # A text longer than the position table makes the text encoder fail deep in torch;
        # keep its start instead, as the ViLT and CLIP adapters do.
        limit = self.max_text if longest is None else min(longest, self.max_text)
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        return enc.to(self.device)

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
        in_domain = self.in_domain(embeds)
        with torch.inference_mode():
            image_mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
            # As BLIP's processor and generate() feed a prompt: no [CLS] or [SEP], within the position table.
            given = self.prompt_ids(generation.prompt, limit=max(0, self.max_text - 2))
            prompt = torch.tensor([[self.bos_id, *given]] * batch, dtype=torch.long, device=embeds.device)
            sequences = self._generate(prompt, embeds, image_mask, generation)  # (B, 1 + prompt + new)
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
            ids = cut_at(ids, {self.sep_id, self.pad_id}, start=len(given))
            words = [i for i in self._word_positions(ids) if i >= len(given)]
            kept = [ids[i] for i in words]
            tokens = tuple(self.tokenizer.convert_ids_to_tokens(kept))
            stack = None
            if cross is not None:
                # ids[i] sits at sequence position i + 1, so query position i is the one that produced it
                stack = stack_from(cross, b, words, tokens, self._layer_hint("caption_layer", "mean"))
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(CaptionResult(caption=text, tokens=tokens, attention=stack, in_domain=in_domain[b],
                                         prompt=self.tokenizer.decode(given) if given else ""))
        return results

    # ------------------------------------------------------------------- VQA

    def answer_questions(
        self,
        image: Image.Image,
        questions: Sequence[str],
        *,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),
    ) -> list[AnswerResult]:
        torch = self._torch
        if not questions:
            return []
        key = content_key(image)
        embeds = self.image_embeds([image], [key])  # (1, N, D)
        in_domain = self.in_domain(embeds)[0]
        enc = self._encode_texts(questions)
        count = len(questions)
        with torch.inference_mode(), self.cross_memo.for_image(key):
            # One image's features for all questions: the cross-attention broadcasts them over the batch.
            image_mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
            encoded = self.model.text_encoder(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                encoder_hidden_states=embeds,
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
                    in_domain=in_domain,
                )
            )
        return results

    # ------------------------------------------------------------------- ITM

    def score_texts(self, image: Image.Image, texts: Sequence[str], *, attention: bool = False) -> list[MatchResult]:
        torch = self._torch
        if not texts:
            return []
        key = content_key(image)
        embeds = self.image_embeds([image], [key])  # (1, N, D)
        in_domain = self.in_domain(embeds)[0]
        enc = self._encode_texts(texts, longest=128)
        model = self.model
        chunks = self._similar_lengths(enc)
        with torch.inference_mode():
            text_cls = torch.cat([model.text_encoder(**chunk)[0][:, 0, :] for _, chunk in chunks])
            text_cls = text_cls[torch.argsort(torch.cat([rows for rows, _ in chunks]))]
            image_feat = torch.nn.functional.normalize(model.vision_proj(embeds[:, 0, :]), dim=-1)
            text_feat = torch.nn.functional.normalize(model.text_proj(text_cls), dim=-1)
            itc = (text_feat @ image_feat.t())[:, 0].float().cpu().numpy()
        if attention:
            itm, cams = self._itm_with_gradcam(embeds, enc)
        else:
            # One image's features for all texts: the cross-attention broadcasts them over the batch.
            with torch.inference_mode(), self.cross_memo.for_image(key):
                itm = torch.cat([self._itm_logits(embeds, chunk) for _, chunk in chunks])
                itm = itm[torch.argsort(torch.cat([rows for rows, _ in chunks]))]
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
                            token_attention=token_stack, label_probability=float(labels[t]), in_domain=in_domain)
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
        enc = self._encode_texts(texts, longest=128)
        with torch.inference_mode():
            hidden = self.model.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0]
            feats = torch.nn.functional.normalize(self.model.text_proj(hidden[:, 0, :]), dim=-1)
        return feats.float().cpu().numpy()

    def match_scores(self, images: Sequence[Image.Image], text: str, batch_size: int = 64) -> np.ndarray:
        """(B,) ITM probability that `text` describes each image."""
        return self._match(images, text, batch_size, domain=False)[0]

    def match_and_domain(self, images: Sequence[Image.Image], text: str, batch_size: int = 64
                         ) -> tuple[np.ndarray, list[float | None]]:
        """((B,) ITM probability that `text` describes each image, each image's in_domain): what search
        re-ranks with, and whether the model's world is where the image comes from (one vision pass)."""
        return self._match(images, text, batch_size, domain=True)

    def _match(self, images: Sequence[Image.Image], text: str, batch_size: int, *, domain: bool
               ) -> tuple[np.ndarray, list[float | None]]:
        self._require(Task.ITM)
        torch = self._torch
        enc = self._encode_texts([text], longest=128)
        scores, in_domain = [], []
        for start in range(0, len(images), batch_size):
            # Straight through the encoder: a search's images would only churn the vision cache.
            pixels = self.pixel_values(images[start:start + batch_size])
            with torch.inference_mode():
                embeds = self.model.vision_model(pixel_values=pixels)[0]
                rows = {k: v.expand(len(embeds), -1) for k, v in enc.items()}
                logits = self._itm_logits(embeds, rows)
            scores.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
            if domain:  # evaluation's search figure re-ranks thousands of candidates and never asks
                in_domain += self.in_domain(embeds)
        return (np.concatenate(scores) if scores else np.zeros(0, np.float32)), in_domain

    def _similar_lengths(self, enc, size: int = 16) -> list:
        """The texts in chunks of similar length, each padded only to its own longest: [(rows, chunk)].

        One batch padded to the longest text spends a quarter to a third of the text encoder's work on
        padding when lengths vary (captions of one to four objects); the results are the same.
        """
        torch = self._torch
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if getattr(self.tokenizer, "padding_side", "right") != "right" or len(ids) <= size:
            return [(torch.arange(len(ids), device=ids.device), {"input_ids": ids, "attention_mask": mask})]
        lengths = mask.sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        chunks = []
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            width = int(lengths[rows].max())
            chunks.append((rows, {"input_ids": ids[rows, :width], "attention_mask": mask[rows, :width]}))
        return chunks

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


FACTORY = AdapterFactory(family="blip", accepts=FAMILY.accepts, load=BlipAdapter.load, tasks_of=FAMILY.tasks_of,
                         notes="Salesforce BLIP: caption, VQA and retrieval heads")

"""ViLT visual question answering, with the answer's attention on the image patches.

ViLT (dandelin/vilt-b32-finetuned-vqa) is one transformer over the question's
tokens and the image's patches; the answer is a class of its VQA head
(`config.id2label`). ViLT *samples* the patches it reads, in a random order
(all of them, unless `max_image_length` caps the count); mmstudio runs that
sampling itself, with a fixed seed, so it can put each patch's attention back at
its grid position and so the same input always gives the same answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from PIL import Image

from mmstudio.attention import AttentionStack
from mmstudio.models.adapter import AdapterBase
from mmstudio.models.base import AdapterFactory, AnswerResult, GenerationOptions, Task
from mmstudio.models.common import Architectures

FAMILY = Architectures("vilt", {"ViltForQuestionAnswering": Task.VQA})
SAMPLING_SEED = 0


class ViltAdapter(AdapterBase):
    family: ClassVar[str] = "vilt"
    TASKS = frozenset({Task.VQA})
    loads = FAMILY
    kind = "a ViLT VQA model"
    checkpoint_kind = "ViLT VQA"

    def __init__(self, model, processor, *, name: str, path: Path, dtype: str = "fp32"):
        # No vision cache: the patches are sampled and embedded with the question in one pass.
        super().__init__(model, processor.tokenizer, processor.image_processor, name=name, path=path, dtype=dtype,
                         cache_size=0)
        self.processor = processor

    def image_geometry(self) -> tuple[int, int]:
        # nominal: ViLT keeps the image's aspect ratio, so the real grid varies
        config = self.model.config
        return config.image_size, config.patch_size

    @staticmethod
    def load_processing(path) -> tuple:
        from transformers import ViltProcessor

        return (ViltProcessor.from_pretrained(path, trust_remote_code=False),)

    def patches(self, image: Image.Image):
        """ViLT's patch embeddings of one image: (embeds (1, 1 + n, D), mask (1, 1 + n), positions (n, 2), grid).

        `positions` are the (row, col) of each sampled patch on the `grid` of the resized image.
        """
        torch = self._torch
        pixels = self.processor.image_processor(images=[image], return_tensors="pt")
        with torch.inference_mode(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(SAMPLING_SEED)  # the sampling of patches is random in transformers
            embeds, mask, (positions, (rows, cols)) = self.model.vilt.embeddings.visual_embed(
                pixels["pixel_values"].to(self.device, self.dtype),
                pixels["pixel_mask"].to(self.device),
                max_image_length=self.model.config.max_image_length,
            )
        return embeds, mask, positions[0].cpu().numpy(), (int(rows), int(cols))

    def answer_questions(
        self,
        image: Image.Image,
        questions: Sequence[str],
        *,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),  # noqa: ARG002 - answers are classes, not generated
    ) -> list[AnswerResult]:
        torch = self._torch
        if not questions:
            return []
        count = len(questions)
        embeds, mask, positions, grid = self.patches(image)
        max_length = self.model.config.max_position_embeddings
        enc = self.processor.tokenizer(list(questions), padding=True, truncation=True, max_length=max_length,
                                       return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                token_type_ids=enc.get("token_type_ids"),
                image_embeds=embeds.expand(count, -1, -1),
                pixel_mask=mask.expand(count, -1),  # with image_embeds, the patch-level mask
                output_attentions=attention,
            )
        best = out.logits.float().argmax(-1).tolist()
        text_length = enc["input_ids"].shape[1]
        layers = [a.float().cpu().numpy() for a in out.attentions] if attention else []  # L x (Q, H, S, S)
        results = []
        special = set(self.processor.tokenizer.all_special_ids)
        for q, question in enumerate(questions):
            answer = self.model.config.id2label[best[q]]
            ids = enc["input_ids"][q][enc["attention_mask"][q].bool()].tolist()
            words = [i for i, t in enumerate(ids) if t not in special]
            tokens = tuple(self.processor.tokenizer.convert_ids_to_tokens([ids[i] for i in words]))
            q_stack = a_stack = None
            if attention:
                # Text position 0 ([CLS]) is what the pooler, and so the answer head, reads.
                rows_to_image = [layer[q][:, [0, *words], text_length + 1:] for layer in layers]  # L x (H, 1+W, n)
                on_grid = _scatter(np.stack(rows_to_image, axis=0), positions, grid)  # (L, H, 1+W, rows, cols)
                on_grid = np.moveaxis(on_grid, 2, 0)  # (1+W, L, H, rows, cols)
                recorded = tuple(range(len(layers)))
                a_stack = AttentionStack((answer,), on_grid[:1], recorded, "mean")
                q_stack = AttentionStack(tokens, on_grid[1:], recorded, "mean")
            results.append(AnswerResult(question=question, answer=answer, question_tokens=tokens,
                                        question_attention=q_stack, answer_attention=a_stack))
        return results


def _scatter(weights: np.ndarray, positions: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(..., n) weights of n sampled patches -> (..., rows, cols), each at its (row, col); cells not read stay 0."""
    rows, cols = grid
    out = np.zeros((rows * cols, *weights.shape[:-1]), dtype=np.float32)
    flat = positions[:, 0] * cols + positions[:, 1]  # (n,)
    np.add.at(out, flat, np.moveaxis(weights, -1, 0))  # a position sampled twice (padding) adds up
    return np.moveaxis(out, 0, -1).reshape(*weights.shape[:-1], rows, cols)


FACTORY = AdapterFactory(family="vilt", accepts=FAMILY.accepts, load=ViltAdapter.load, tasks_of=FAMILY.tasks_of,
                         notes="ViLT: visual question answering (answer classes)")

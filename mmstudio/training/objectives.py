"""What each task learns: batches built from a dataset, and the loss on them.

Each objective wraps the BLIP model in a module whose forward returns the loss,
so HF Trainer (and DDP under torchrun) drive it like any model: gradients of
every part flow through the wrapper's forward.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmstudio.models.base import Task
from mmstudio.training.cross_passes import LENGTH_GROUPS, keys_once_per_image, length_groups
from mmstudio.training.data import Dataset, Example, PixelStore
from mmstudio.training.grounding import GroundingHead, patch_labels
from mmstudio.world.descriptions import false_descriptions, partial_description, truth_table

ITC_TEMPERATURE = 0.07  # BLIP's initial temperature; HF's retrieval head has no learned one to carry it
# A caption's own scene against other scenes it is true of: 4 times the ITC target, a similarity margin of
# 0.07 * ln 4 = 0.1 at the optimum, so recall@1 still finds the scene the caption was written for.
OWN_CAPTION_WEIGHT = 4.0


class _Objective(nn.Module):
    """A task loss around a BLIP model, with the optional grounding head on the vision features."""

    def __init__(self, model, grounding: bool = False):
        super().__init__()
        self.model = model
        self.grounding = GroundingHead(model.config.vision_config.hidden_size) if grounding else None

    def _with_grounding(self, loss, image_embeds, patch_labels):
        if self.grounding is None or patch_labels is None:
            return {"loss": loss}
        aux = self.grounding(image_embeds, patch_labels)
        return {"loss": loss + aux, "task_loss": loss.detach(), "grounding_loss": aux.detach()}


class CaptionObjective(_Objective):
    def forward(self, pixel_values, input_ids, attention_mask, labels, patch_labels=None):
        out = self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask,
                         labels=labels)
        return self._with_grounding(out.loss, out.image_embeds, patch_labels)


class VqaObjective(_Objective):
    """One vision pass per image, several questions per image (`image_index` maps question -> image)."""

    def forward(self, pixel_values, image_index, input_ids, attention_mask, answer_ids, answer_mask, labels,
                patch_labels=None):
        m = self.model
        image_embeds = m.vision_model(pixel_values=pixel_values)[0]
        # Not keys once per image (cross_passes.py): at four questions an image they saved under 2 % of a step.
        embeds = image_embeds[image_index]  # (Q, N, D)
        image_mask = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
        question = m.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  encoder_hidden_states=embeds, encoder_attention_mask=image_mask)[0]
        out = m.text_decoder(input_ids=answer_ids, attention_mask=answer_mask, encoder_hidden_states=question,
                             encoder_attention_mask=attention_mask, labels=labels, reduction="mean")
        return self._with_grounding(out.loss, image_embeds, patch_labels)


class ItmObjective(_Objective):
    """ITC (InfoNCE both ways) plus ITM on positives, hard-negative texts and hardest in-batch pairs.

    caption_true_of (images x captions of the batch), where the data has objects: which captions are true
    of which images. Another scene's caption is often a true partial description of an image (its one
    object is among the image's); counted as a mismatch, it taught ITC and the head that `a small red
    circle` does not match a picture holding one among other objects (39 % accepted). With it, such pairs
    are ITC targets (the image's own caption weighed OWN_CAPTION_WEIGHT times more, so a caption still
    retrieves its own scene first), never mined as negatives, and one per image is an ITM positive.

    partial_itc_weight: weight of a text-to-image ITC term over the batch's true partial descriptions (what a
    search query asks), beside the captions'. (In place of captions, at full weight both ways, partials cost
    recall@1 among 100: 95 -> 64 %; resources/models/README.md has the tries.)
    """

    def __init__(self, model, grounding: bool = False, partial_itc_weight: float = 0.0, cheap_passes: bool = True):
        super().__init__(model, grounding)
        self.partial_itc_weight = partial_itc_weight
        self.cheap_passes = cheap_passes  # off: the plain text passes (cross_passes.py), for bench/train_step.py

    def _itm_logits(self, embeds, pair_image, input_ids, attention_mask):
        """ITM logits of texts (input_ids) against images (embeds[pair_image]), in the text order."""
        logits, rows = [], []
        with keys_once_per_image(self.model.text_encoder, embeds, once=self.cheap_passes) as images:
            for group in length_groups(attention_mask, LENGTH_GROUPS if self.cheap_passes else 1):
                width = int(attention_mask[group].sum(dim=1).max())
                image_mask = torch.ones(len(group), embeds.shape[1], dtype=torch.long, device=embeds.device)
                hidden = self.model.text_encoder(input_ids=input_ids[group, :width],
                                                 attention_mask=attention_mask[group, :width],
                                                 encoder_hidden_states=images(pair_image[group]),
                                                 encoder_attention_mask=image_mask)[0]
                logits.append(self.model.itm_head(hidden[:, 0, :]))
                rows.append(group)
        return torch.cat(logits)[torch.argsort(torch.cat(rows))]

    def _partial_itc(self, image_feat, input_ids, attention_mask, true_of):
        rows = true_of.any(dim=1)  # near misses describe no image of the batch: no target, not encoded
        input_ids, attention_mask, true_of = input_ids[rows], attention_mask[rows], true_of[rows]
        text = self.model.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        text_feat = F.normalize(self.model.text_proj(text[:, 0, :]), dim=-1)
        return _partial_itc_loss(text_feat @ image_feat.t() / ITC_TEMPERATURE, true_of)

    def forward(self, pixel_values, input_ids, attention_mask, neg_input_ids, neg_attention_mask, neg_valid,
                same_text, partial_input_ids=None, partial_attention_mask=None, partial_image=None,
                partial_label=None, partial_true_of=None, caption_true_of=None, patch_labels=None):
        m = self.model
        embeds = m.vision_model(pixel_values=pixel_values)[0]  # (B, N, D)
        text = m.text_encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        image_feat = F.normalize(m.vision_proj(embeds[:, 0, :]), dim=-1)
        text_feat = F.normalize(m.text_proj(text[:, 0, :]), dim=-1)
        sim = image_feat @ text_feat.t() / ITC_TEMPERATURE  # (B images, B texts)
        true_of = same_text if caption_true_of is None else caption_true_of | same_text
        itc = _itc(sim, same_text, true_of)
        if self.partial_itc_weight and partial_true_of is not None and partial_true_of.any():
            partial = self._partial_itc(image_feat, partial_input_ids, partial_attention_mask, partial_true_of)
            itc = itc + self.partial_itc_weight * partial

        with torch.no_grad():  # hardest in-batch partner for each image and each text, as BLIP mines them
            weights = sim.detach().float().masked_fill(true_of, float("-inf"))
            has_other = torch.isfinite(weights).any(dim=1)
            weights = torch.where(has_other[:, None], weights, torch.zeros_like(weights))
            text_for_image = torch.multinomial(torch.softmax(weights, dim=1), 1).squeeze(1)
            weights_t = sim.detach().float().t().masked_fill(true_of.t(), float("-inf"))
            has_other_t = torch.isfinite(weights_t).any(dim=1)
            weights_t = torch.where(has_other_t[:, None], weights_t, torch.zeros_like(weights_t))
            image_for_text = torch.multinomial(torch.softmax(weights_t, dim=1), 1).squeeze(1)
            # Another scene's caption true of the image: a partial description the head must accept.
            others = true_of & ~same_text
            has_true = others.any(dim=1)
            true_text = (torch.multinomial(others[has_true].float(), 1).squeeze(1) if has_true.any()
                         else torch.zeros(0, dtype=torch.long, device=sim.device))

        per_image = neg_input_ids.shape[0] // embeds.shape[0]  # hard negatives written per image
        image = torch.arange(embeds.shape[0], device=embeds.device)
        pair_image = torch.cat([image, image.repeat_interleave(per_image)[neg_valid], image[has_other],
                                image_for_text[has_other_t]])
        pair_ids = torch.cat([input_ids, neg_input_ids[neg_valid], input_ids[text_for_image[has_other]],
                              input_ids[has_other_t]])
        pair_mask = torch.cat([attention_mask, neg_attention_mask[neg_valid],
                               attention_mask[text_for_image[has_other]], attention_mask[has_other_t]])
        batch = embeds.shape[0]
        labels = torch.zeros(pair_ids.shape[0], dtype=torch.long, device=embeds.device)
        labels[:batch] = 1
        if len(true_text):
            pair_image = torch.cat([pair_image, image[has_true]])
            pair_ids = torch.cat([pair_ids, input_ids[true_text]])
            pair_mask = torch.cat([pair_mask, attention_mask[true_text]])
            labels = torch.cat([labels, torch.ones(len(true_text), dtype=torch.long, device=labels.device)])
        if partial_input_ids is not None and len(partial_input_ids):
            pair_image = torch.cat([pair_image, partial_image.to(image.device)])
            pair_ids = torch.cat([pair_ids, partial_input_ids])
            pair_mask = torch.cat([pair_mask, partial_attention_mask])
            labels = torch.cat([labels, partial_label.to(labels.device)])
        logits = self._itm_logits(embeds, pair_image, pair_ids, pair_mask)
        # Positives are a third or a quarter of the pairs; weigh the classes equally.
        positives = labels.sum().clamp(min=1).float()
        class_weight = torch.stack([torch.ones_like(positives), (labels.numel() - positives) / positives])
        itm = F.cross_entropy(logits, labels, weight=class_weight.to(logits.dtype))
        return self._with_grounding(itc + itm, embeds, patch_labels)


def _partial_itc_loss(sim, true_of):
    """Text-to-image InfoNCE of partial descriptions: each true of every batch image it describes."""
    rows = true_of.any(dim=1)
    targets = true_of[rows].float() / true_of[rows].float().sum(dim=1, keepdim=True)
    return torch.sum(-F.log_softmax(sim[rows], dim=1) * targets, dim=1).mean()


def _itc(sim, same_text, true_of=None):
    """InfoNCE both ways over full captions (sim: images x texts), with soft targets.

    true_of: which captions are true of which images (another scene's caption can be a partial description
    of an image); each is a target, the image's own caption OWN_CAPTION_WEIGHT times more. Partial
    descriptions in place of captions, at full weight both ways, cost recall@1 among 100 (95 -> 64 %).
    """
    if true_of is None:
        true_of = same_text
    weight = true_of.float() + (OWN_CAPTION_WEIGHT - 1) * same_text.float()
    image_to_text = weight / weight.sum(dim=1, keepdim=True)
    text_to_image = weight.t() / weight.t().sum(dim=1, keepdim=True)
    return (torch.sum(-F.log_softmax(sim, dim=1) * image_to_text, dim=1).mean()
            + torch.sum(-F.log_softmax(sim.t(), dim=1) * text_to_image, dim=1).mean()) / 2


OBJECTIVES = {Task.CAPTION: CaptionObjective, Task.VQA: VqaObjective, Task.ITM: ItmObjective}


class Collator:
    """Turns a list of item indices into the objective's tensors."""

    def __init__(self, task: Task, dataset: Dataset, pixels: PixelStore, tokenizer, *,
                 questions_per_image: int = 4, negatives_per_image: int = 1, order_share: float = 0.0,
                 partial_share: float = 0.0, seed: int = 0, max_length: int = 48, grid_side: int = 0,
                 partial_true_of: bool = True):
        self.task = task
        # Which batch images each partial text is true of: the partial ITC term's targets, 18 ms a batch of 64
        # to work out, so not worked out for a run without that term.
        self.partial_true_of = partial_true_of
        self.negatives_per_image = negatives_per_image
        self.order_share = order_share
        # Partial descriptions need every image's objects; data without them trains on its own texts.
        self.partial_share = partial_share if dataset.objects and all(dataset.objects) else 0.0
        self.np_rng = np.random.default_rng(seed)
        self.dataset = dataset
        self.pixels = pixels
        self.tokenizer = tokenizer
        self.questions_per_image = questions_per_image
        self.max_length = max_length
        self.rng = random.Random(seed)
        self.grid_side = grid_side  # > 0: add patch labels for the grounding head
        self.by_image: dict[int, list[Example]] = {}
        for example in dataset.examples:
            self.by_image.setdefault(example.image, []).append(example)

    def items(self) -> list[int]:
        """What one epoch iterates over: images for VQA (questions sampled per batch), examples otherwise."""
        if self.task == Task.VQA:
            return sorted(self.by_image)
        return list(range(len(self.dataset.examples)))

    def _tokens(self, texts: Sequence[str], *, decoder: bool):
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_token_type_ids=False)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if decoder:  # BLIP's decoder starts from [DEC] where the tokenizer put [CLS]
            ids = ids.clone()
            ids[:, 0] = self.tokenizer.bos_token_id
        return ids, mask

    @staticmethod
    def _labels(ids, mask):
        return ids.masked_fill(mask == 0, -100)

    def __call__(self, items: list) -> dict:
        items = [int(i["index"]) if isinstance(i, dict) else int(i) for i in items]
        batch = self._batch(items)
        if self.grid_side:
            images = items if self.task == Task.VQA else [self.dataset.examples[i].image for i in items]
            batch["patch_labels"] = self._patch_labels(images)
        return batch

    def _patch_labels(self, images: list[int]):
        labels = [patch_labels(self.dataset.objects[i], *self.dataset.sizes[i], self.grid_side) for i in images]
        return torch.from_numpy(np.stack(labels))

    def _batch(self, items: list[int]) -> dict:
        if self.task == Task.CAPTION:
            examples = [self.dataset.examples[i] for i in items]
            ids, mask = self._tokens([e.text for e in examples], decoder=True)
            return {"pixel_values": self.pixels.batch([e.image for e in examples]), "input_ids": ids,
                    "attention_mask": mask, "labels": self._labels(ids, mask)}
        if self.task == Task.VQA:
            chosen, image_index = [], []
            for slot, image in enumerate(items):
                pool = self.by_image[image]
                picked = self.rng.sample(pool, min(self.questions_per_image, len(pool)))
                chosen += picked
                image_index += [slot] * len(picked)
            q_ids, q_mask = self._tokens([e.text for e in chosen], decoder=False)
            a_ids, a_mask = self._tokens([e.answer for e in chosen], decoder=True)
            return {"pixel_values": self.pixels.batch(items), "image_index": torch.tensor(image_index),
                    "input_ids": q_ids, "attention_mask": q_mask, "answer_ids": a_ids, "answer_mask": a_mask,
                    "labels": self._labels(a_ids, a_mask)}
        examples = [self.dataset.examples[i] for i in items]
        texts = [e.text for e in examples]
        # Rows without a written hard negative still learn from the in-batch ones.
        negatives = [text for e in examples for text in self._hard_negatives(e)]
        partial_texts, partial_image, partial_label = self._partials(examples)
        ids, mask = self._tokens(texts, decoder=False)
        neg_ids, neg_mask = self._tokens(negatives, decoder=False)
        tokens = [ids, mask, neg_ids, neg_mask]
        if partial_texts:
            tokens += self._tokens(partial_texts, decoder=False)
        width = max(t.shape[1] for t in tokens)
        tokens = [_pad_to(t, width) for t in tokens]
        extra = {}
        if partial_texts:
            extra = {"partial_input_ids": tokens[4], "partial_attention_mask": tokens[5],
                     "partial_image": torch.tensor(partial_image), "partial_label": torch.tensor(partial_label)}
            if self.partial_true_of:
                extra["partial_true_of"] = self._true_of(examples, partial_texts).t().contiguous()
        if self.dataset.has_objects():
            extra["caption_true_of"] = self._true_of(examples, texts)
        return {"pixel_values": self.pixels.batch([e.image for e in examples]), "input_ids": tokens[0],
                "attention_mask": tokens[1], "neg_input_ids": tokens[2], "neg_attention_mask": tokens[3],
                "neg_valid": torch.tensor([bool(e.negatives) for e in examples
                                           for _ in range(self.negatives_per_image)]),
                "same_text": torch.tensor([[a == b for b in texts] for a in texts]), **extra}

    def _true_of(self, examples: list[Example], texts: list[str]):
        """(images x texts) whether each text is true of each example's image, by its objects."""
        return torch.tensor(truth_table([self.dataset.objects[e.image] for e in examples], texts))

    def _partials(self, examples: list[Example]) -> tuple[list[str], list[int], list[int]]:
        """(texts, batch row of their image, 1 if true) of the ITM head's extra pairs: for partial_share of the
        images, a true partial description (some of its objects, maybe without size or colour) and a near
        miss of it. The captions stay in every row, so ITC keeps learning from all of them."""
        texts: list[str] = []
        rows: list[int] = []
        labels: list[int] = []
        if not self.partial_share:
            return texts, rows, labels
        for row, example in enumerate(examples):
            if self.rng.random() >= self.partial_share:
                continue
            objects = self.dataset.objects[example.image]
            text = partial_description(objects, self.np_rng)
            misses = false_descriptions(objects, text, self.np_rng, k=1)
            texts += [text, *misses]
            rows += [row] * (1 + len(misses))
            labels += [1] + [0] * len(misses)
        return texts, rows, labels

    def _hard_negatives(self, example: Example) -> list[str]:
        """`negatives_per_image` distinct written negatives where there are enough (placeholders where none).

        With `order_share`, one of them is a reordering of the caption's own words (the same objects named
        in another order) that often, where the row has one: only those teach the model to check order.
        """
        k, negatives = self.negatives_per_image, example.negatives
        if not negatives:
            return [example.text] * k
        picked: list[str] = []
        if self.order_share:
            words = sorted(example.text.split())
            reordered = [n for n in negatives if sorted(n.split()) == words]
            if reordered and self.rng.random() < self.order_share:
                picked.append(self.rng.choice(reordered))
                negatives = [n for n in negatives if n != picked[0]] or negatives
        need = k - len(picked)
        if need == 1:  # the draw of runs made before there was a choice, so their seeds still reproduce them
            return picked + [self.rng.choice(negatives)]
        if len(negatives) >= need:
            return picked + self.rng.sample(negatives, need)
        return picked + [self.rng.choice(negatives) for _ in range(need)]


def _pad_to(tensor, width: int):
    if tensor.shape[1] == width:
        return tensor
    return F.pad(tensor, (0, width - tensor.shape[1]), value=0)

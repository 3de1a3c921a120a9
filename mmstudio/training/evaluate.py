"""`mmstudio eval`: task metrics of a model on a dataset, through the same adapter the app uses.

Caption: exact match and corpus BLEU-4. VQA: accuracy overall and per question
kind. ITM: accuracy on positives and hard negatives, and text-to-image recall@1
among groups of 100 scenes (ITC). With object boxes in the data, pointing
accuracy of attention per the Shapes World grounding rule, for every layer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mmstudio.attention import points_at
from mmstudio.imaging import load_image
from mmstudio.models.base import Reranker, Task
from mmstudio.training.bleu import corpus_bleu
from mmstudio.training.data import Dataset, read_dataset
from mmstudio.training.itm_probes import decision_texts, one_object_queries, search_map
from mmstudio.world.vocab import COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES

NAMING_WORDS = set(COLORS) | set(SHAPES) | set(EXTRA_COLORS) | set(EXTRA_SHAPES)
RETRIEVAL_GROUP = 100


@dataclass
class EvalReport:
    task: Task
    count: int
    metrics: dict[str, float] = field(default_factory=dict)
    per_kind: dict[str, float] = field(default_factory=dict)
    pointing_by_layer: dict[str, float] = field(default_factory=dict)
    default_layer: str = ""
    examples: list[dict] = field(default_factory=list)  # a few failures, to look at

    def headline(self) -> dict:
        out = {k: round(v, 4) for k, v in self.metrics.items()}
        out.update({f"accuracy_{k}": round(v, 4) for k, v in self.per_kind.items()})
        return out

    def as_dict(self) -> dict:
        return {"task": self.task.value, "count": self.count, "metrics": self.headline(),
                "per_kind": {k: round(v, 4) for k, v in self.per_kind.items()},
                "pointing_by_layer": {k: round(v, 4) for k, v in self.pointing_by_layer.items()},
                "default_layer": self.default_layer, "failures": self.examples[:10]}

    def text(self) -> str:
        lines = [f"{self.task.value} on {self.count} scenes"]
        lines += [f"  {k:<28} {v:8.2%}" if v <= 1 else f"  {k:<28} {v:8.3f}" for k, v in self.metrics.items()]
        if self.per_kind:
            lines.append("  per question kind:")
            lines += [f"    {k:<26} {v:8.2%}" for k, v in sorted(self.per_kind.items())]
        if self.pointing_by_layer:
            lines.append("  pointing accuracy by attention layer (mean over heads):")
            lines += [f"    layer {k:<20} {v:8.2%}" for k, v in self.pointing_by_layer.items()]
        return "\n".join(lines)


def scene_rows(data: Path | Dataset, task: Task, limit: int | None = None) -> list[dict]:
    """The dataset's rows as evaluation reads them, one per metadata row, validated by the one dataset reader
    (training's, so an eval set that passes "Check data" evaluates): dicts with `_path`, `_where`, `caption`
    and `negatives` (caption, ITM) or `questions` (VQA), and `objects`, `width`, `height` where known."""
    task = Task(task)
    dataset = data if isinstance(data, Dataset) else read_dataset(data, task, rows=limit)
    rows: dict[int, dict] = {}
    for example in dataset.examples:
        row = rows.get(example.line)
        if row is None:
            if limit is not None and len(rows) >= limit:
                break
            size = dataset.sizes[example.image] or (None, None)
            row = rows[example.line] = {"_path": dataset.images[example.image], "_where": dataset.where(example),
                                        "objects": dataset.objects[example.image], "width": size[0],
                                        "height": size[1]}
            if task == Task.VQA:
                row["questions"] = []
            else:
                row["caption"], row["negatives"] = example.text, list(example.negatives)
        if task == Task.VQA:
            row["questions"].append({"question": example.text, "answer": example.answer,
                                     "kind": example.kind or "all"})
    return list(rows.values())


def evaluate_adapter(adapter, data: Path | Dataset, *, limit: int | None = None, attention: bool = True,
                     batch_size: int = 64, progress: Callable[[int, int], None] | None = None,
                     task: Task | None = None) -> EvalReport:
    """data: a dataset folder, or a Dataset already read (the evaluation during training). `task`: which of
    the model's tasks (a chat model captions and answers); by default its one task."""
    tasks = adapter.info.tasks
    if task is None and len(tasks) > 1:
        raise ValueError(f"{adapter.info.name} does {len(tasks)} tasks: name the one to measure")
    task = Task(task) if task is not None else next(iter(tasks))
    rows = scene_rows(data, task, limit)
    run = {Task.CAPTION: _caption, Task.VQA: _vqa, Task.ITM: _itm}[task]
    return run(adapter, rows, attention=attention, batch_size=batch_size, progress=progress or (lambda d, t: None))


class _Pointing:
    """Pointing hits per layer choice ("mean" and each layer index)."""

    def __init__(self):
        self.hits: Counter = Counter()
        self.total = 0

    def add(self, stack, token_index: int, bbox, width: float, height: float) -> None:
        self.total += 1
        for layer in ["mean", *stack.layers]:
            amap = stack.maps(layer=layer)[token_index]
            self.hits[str(layer)] += points_at(amap, bbox, width, height)

    def by_layer(self) -> dict[str, float]:
        return {k: self.hits[k] / self.total for k in sorted(self.hits, key=str)} if self.total else {}


def _caption(adapter, rows, *, attention, batch_size, progress) -> EvalReport:
    hypotheses, references, exact = [], [], 0
    pointing = _Pointing()
    failures = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        results = adapter.caption([load_image(r["_path"]) for r in chunk], attention=attention)
        for row, result in zip(chunk, results):
            reference = row["caption"]
            hypotheses.append(result.caption.split())
            references.append(reference.split())
            if result.caption == reference:
                exact += 1
                if attention and result.attention is not None and row.get("objects"):
                    _caption_pointing(pointing, row, result)
            elif len(failures) < 20:
                failures.append({"image": str(row["_path"]), "expected": reference, "got": result.caption})
        progress(min(start + batch_size, len(rows)), len(rows))
    report = EvalReport(Task.CAPTION, len(rows), examples=failures)
    report.metrics["exact_match"] = exact / max(1, len(rows))
    report.metrics["bleu4"] = corpus_bleu(references, hypotheses)
    _add_pointing(report, pointing, "caption_pointing", adapter.hints.get("caption_layer", "mean"))
    return report


def _caption_pointing(pointing: _Pointing, row: dict, result) -> None:
    """Words of phrase k (split on "and") name object k, counting left to right."""
    objects = sorted(row["objects"], key=_left_to_right)
    phrase = 0
    for index, token in enumerate(result.tokens):
        if token == "and":
            phrase += 1
        elif token in NAMING_WORDS and phrase < len(objects):
            pointing.add(result.attention, index, objects[phrase]["bbox"], row["width"], row["height"])


def _left_to_right(obj: dict) -> float:
    """The x the world's captions order objects by: the center, or the box's middle where no center is given."""
    return obj["center"][0] if "center" in obj else (obj["bbox"][0] + obj["bbox"][2]) / 2


def _add_pointing(report: EvalReport, pointing: _Pointing, name: str, default) -> None:
    by_layer = pointing.by_layer()
    if not by_layer:
        return
    report.pointing_by_layer = by_layer
    report.default_layer = str(default)
    report.metrics[name] = by_layer.get(str(default), by_layer["mean"])


def _vqa(adapter, rows, *, attention, batch_size, progress) -> EvalReport:
    right, total = Counter(), Counter()
    pointing = _Pointing()
    failures = []
    not_understood = 0
    for i, row in enumerate(rows):
        pairs = row.get("questions") or []
        if not pairs:
            continue
        results = adapter.answer(load_image(row["_path"]), [p["question"] for p in pairs], attention=attention)
        for pair, result in zip(pairs, results):
            kind = pair.get("kind", "all")
            # A question with words the model does not know has no answer: wrong, and counted apart as well.
            ok = result.understood and result.answer == pair["answer"]
            right[kind] += ok
            total[kind] += 1
            not_understood += not result.understood
            if not ok and len(failures) < 20:
                failures.append({"image": str(row["_path"]), "question": pair["question"],
                                 "expected": pair["answer"], "got": result.answer,
                                 **({"unknown_words": list(result.unknown_words)} if not result.understood else {})})
            if attention and result.question_attention is not None and row.get("objects"):
                _question_pointing(pointing, row, pair, result)
        if i % 20 == 0:
            progress(i + 1, len(rows))
    report = EvalReport(Task.VQA, len(rows), examples=failures)
    report.metrics["accuracy"] = sum(right.values()) / max(1, sum(total.values()))
    if "absent" in total:  # the addition's kind apart, to compare with models measured before it
        v1 = [k for k in total if k != "absent"]
        report.metrics["accuracy_v1_kinds"] = sum(right[k] for k in v1) / max(1, sum(total[k] for k in v1))
    report.per_kind = {k: right[k] / total[k] for k in total}
    if not_understood:  # only then: the reports of data in the model's words stay as they were
        report.metrics["not_understood"] = not_understood / max(1, sum(total.values()))
    _add_pointing(report, pointing, "question_pointing", adapter.hints.get("vqa_layer", "mean"))
    return report


def _singled_out(row: dict, pair: dict) -> dict | None:
    """The object a question is about, when it is about exactly one (spec: Grounding)."""
    words = pair["question"].rstrip("?").split()
    kind = pair.get("kind")
    if len(words) < 2:  # not a question of the world's forms
        return None
    objects = row["objects"]
    if kind == "color_of_shape":
        found = [o for o in objects if o["shape"] == words[-1]]
    elif kind == "shape_of_color":
        found = [o for o in objects if o["color"] == words[-2]]
    elif kind in ("size_of", "exists") and (kind != "exists" or pair["answer"] == "yes"):
        found = [o for o in objects if o["color"] == words[-2] and o["shape"] == words[-1]]
    else:
        return None
    return found[0] if len(found) == 1 else None


def _question_pointing(pointing: _Pointing, row: dict, pair: dict, result) -> None:
    target = _singled_out(row, pair)
    if target is None:
        return
    for index, token in enumerate(result.question_tokens):
        if token in NAMING_WORDS:
            pointing.add(result.question_attention, index, target["bbox"], row["width"], row["height"])


def _itm(adapter, rows, *, attention, batch_size, progress) -> EvalReport:
    correct = pairwise = decisions = pairs = 0
    partial_right = partial_total = 0
    failures = []
    for i, row in enumerate(rows):
        negatives = row.get("negatives") or []
        texts = decision_texts(row, i)
        probes = texts[1 + len(negatives):]
        results = adapter.match(load_image(row["_path"]), [text for text, _ in texts])
        for (text, true), result in zip(probes, results[1 + len(negatives):]):
            partial_right += (result.itm > 0.5) == true
            partial_total += 1
            if (result.itm > 0.5) != true and len(failures) < 20:
                failures.append({"image": str(row["_path"]), "caption": row["caption"], "partial": text,
                                 "true": true, "itm": round(result.itm, 4)})
        results = results[:1 + len(negatives)]
        positive = results[0].itm
        correct += positive > 0.5
        decisions += 1
        for neg in results[1:]:
            correct += neg.itm < 0.5
            pairwise += positive > neg.itm
            decisions += 1
            pairs += 1
            if neg.itm >= 0.5 and len(failures) < 20:
                failures.append({"image": str(row["_path"]), "caption": row["caption"], "negative": neg.text,
                                 "itm_negative": round(neg.itm, 4), "itm_caption": round(positive, 4)})
        if i % 20 == 0:
            progress(i + 1, len(rows))
    report = EvalReport(Task.ITM, len(rows), examples=failures)
    report.metrics["itm_accuracy"] = correct / max(1, decisions)
    report.metrics["itm_pairwise_accuracy"] = pairwise / max(1, pairs)
    if partial_total:
        report.metrics["itm_partial_accuracy"] = partial_right / partial_total
        report.metrics["itm_decision_accuracy"] = (correct + partial_right) / (decisions + partial_total)
    recalls = []
    every_image = np.concatenate([adapter.image_features([load_image(r["_path"]) for r in rows[j:j + batch_size]])
                                  for j in range(0, len(rows), batch_size)]) if rows else np.zeros((0, 1))
    for start in range(0, len(rows) - RETRIEVAL_GROUP + 1, RETRIEVAL_GROUP):
        group = rows[start:start + RETRIEVAL_GROUP]
        images = every_image[start:start + RETRIEVAL_GROUP]
        texts = adapter.text_features([r["caption"] for r in group])
        best = (texts @ images.T).argmax(axis=1)
        # Two scenes can share a caption: retrieving either is right.
        recalls += [group[b]["caption"] == group[t]["caption"] for t, b in enumerate(best)]
    if recalls:
        report.metrics["recall_at_1"] = float(np.mean(recalls))
    if rows and all(r.get("objects") for r in rows):
        queries = one_object_queries()
        text_features = adapter.text_features(queries)
        objects = [r["objects"] for r in rows]
        report.metrics["search_map_one_object"], _ = search_map(every_image, text_features, objects, queries)
        if isinstance(adapter, Reranker):  # what search ranks by: the embeddings' best, re-ranked by the ITM head
            loaded: dict[int, object] = {}  # each query re-ranks mostly the same scenes: read each once

            def match(text: str, indices: np.ndarray) -> np.ndarray:
                for i in indices:
                    if i not in loaded:
                        loaded[i] = load_image(rows[i]["_path"])
                return adapter.match_scores([loaded[i] for i in indices], text)

            report.metrics["search_map_reranked"], _ = search_map(every_image, text_features, objects, queries,
                                                                  match)
    return report


# The selection scenes that pick a model's attention layer: the first of its set (more calibrate the ITM head).
LAYER_SCENES = 300


def pick_default_layer(report: EvalReport) -> str:
    """The layer with the best pointing accuracy ("mean" wins ties: it is the steadier choice)."""
    if not report.pointing_by_layer:
        return "mean"
    best = max(report.pointing_by_layer.values())
    if report.pointing_by_layer.get("mean", -1) >= best:
        return "mean"
    return max(report.pointing_by_layer, key=report.pointing_by_layer.get)

"""Calibrate an ITM head so that "match" means probability above one half.

Training weighs the rarer positive pairs up (a third or a quarter of the pairs), which lifts every
probability: negatives that the model ranks below the true caption can still score above 0.5. A
single shift of the head's bias (Platt scaling of the offset alone) moves the decision margin to
the threshold that separates positives and hard negatives best on a selection set. Rankings,
retrieval and the stock `BlipForImageTextRetrieval` format are untouched.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mmstudio.engine import Engine
from mmstudio.imaging import load_image
from mmstudio.models.base import Task
from mmstudio.training.evaluate import scene_rows
from mmstudio.training.itm_probes import decision_texts

HEAD_BIAS = "itm_head.bias"


def _margins(adapter, data: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logit margins (match minus no-match) of true texts and of false ones: captions and their hard
    negatives, and where the data has objects, partial descriptions and their near misses (as measured)."""
    return _row_margins(adapter, scene_rows(data, Task.ITM, limit))


def _row_margins(adapter, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    positives, negatives = [], []
    for i, row in enumerate(rows):
        texts = decision_texts(row, i)
        if len(texts) < 2:
            continue
        results = adapter.match(load_image(row["_path"]), [t for t, _ in texts])
        for (_, true), result in zip(texts, results):
            (positives if true else negatives).append(_logit(result.itm))
    return np.array(positives), np.array(negatives)


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def best_threshold(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy): the margin cut that classifies the most pairs right."""
    values = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    order = np.argsort(values)
    values, labels = values[order], labels[order]
    # Cutting just above position i calls 0..i "no match": right are the negatives below plus positives above.
    right = np.cumsum(1 - labels) + (labels.sum() - np.cumsum(labels))
    i = int(np.argmax(right))
    cut = (values[i] + values[i + 1]) / 2 if i + 1 < len(values) else values[i] + 1.0
    if right[i] <= labels.sum():  # calling everything "match" is as good: keep the cut below all values
        cut = values[0] - 1.0
    return float(cut), float(max(right[i], labels.sum()) / len(values))


def calibrate_itm(folder: Path, data: Path) -> dict:
    """Shift the ITM head's bias of the checkpoint in `folder` so that 0.5 is the best cut on `data`."""
    from safetensors.torch import load_file, save_file

    adapter = Engine().adapter(Task.ITM, str(folder))
    rows = scene_rows(data, Task.ITM)
    positives, negatives = _row_margins(adapter, rows)
    before = float(((positives > 0).sum() + (negatives < 0).sum()) / (len(positives) + len(negatives)))
    cut, after = best_threshold(positives, negatives)
    file = Path(folder) / "model.safetensors"
    tensors = load_file(str(file))
    bias = tensors[HEAD_BIAS].float()
    bias[1] -= cut / 2  # margin = bias[1] - bias[0] + ...: moves by -cut
    bias[0] += cut / 2
    tensors[HEAD_BIAS] = bias.to(tensors[HEAD_BIAS].dtype)
    staging = file.with_suffix(".calibrating")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging), metadata={"format": "pt"})
    staging.replace(file)
    return {"margin_shift": round(-cut, 4), "selection_accuracy_before": round(before, 4),
            "selection_accuracy_after": round(after, 4), "pairs": int(len(positives) + len(negatives)),
            "scenes": len(rows)}

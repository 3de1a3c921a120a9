"""The recipe of the built-in models: one command retrains all three from scratch.

    mmstudio recipe --out resources/models --work runs/builtin

Pre-training then fine-tuning, as BLIP does: the caption model learns to see
from scratch (caption loss plus the grounding head); the VQA and retrieval
models start from its vision encoder (and VQA from its decoder). Then every
model is measured on a fresh validation set, the attention layer that points
best is recorded, and a model card is written beside the weights.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from mmstudio.models.base import Task
from mmstudio.training.checkpoints import RUN_RECORD, write_json_atomic
from mmstudio.training.run import SCRATCH, TrainConfig, train

Emit = Callable[[dict], None]

TRAIN_SEED, SELECT_SEED, VALID_SEED = 1, 1000, 2000
FOLDER = {Task.CAPTION: "caption", Task.VQA: "vqa", Task.ITM: "retrieval"}


@dataclass(frozen=True)
class Recipe:
    train_scenes: int = 30000
    select_scenes: int = 300  # picks the default attention layer; never the figures we report
    valid_scenes: int = 1000
    caption_steps: int = 10000
    vqa_steps: int = 2000
    itm_steps: int = 2000
    batch_size: int = 64
    vqa_images_per_batch: int = 32
    caption_lr: float = 7e-4
    finetune_lr: float = 3e-4
    workers: int = 2


def command(recipe: Recipe, out: Path, work: Path) -> str:
    return f"mmstudio recipe --out {out} --work {work}"


def run_recipe(out: Path, work: Path, recipe: Recipe = Recipe(), emit: Emit = print) -> dict:
    from mmstudio.world import generate_dataset

    out, work = Path(out), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    data = {name: work / name for name in ("train", "select", "valid")}
    for name, seed, count in (("train", TRAIN_SEED, recipe.train_scenes), ("select", SELECT_SEED,
                              recipe.select_scenes), ("valid", VALID_SEED, recipe.valid_scenes)):
        if not (data[name] / "metadata.jsonl").is_file():
            emit({"event": "generate", "set": name, "count": count, "seed": seed})
            generate_dataset(data[name], count, seed, workers=recipe.workers)
    timings = {"data": time.monotonic() - started}

    def run(task: Task, base: str, steps: int, lr: float, batch: int) -> Path:
        folder = work / FOLDER[task]
        shutil.rmtree(folder, ignore_errors=True)
        begin = time.monotonic()
        config = TrainConfig(task=task, data=data["train"], out=folder, base=base, steps=steps, batch_size=batch,
                             learning_rate=lr, seed=TRAIN_SEED, save_every=max(steps // 4, 100), log_every=50,
                             grounding=True)
        train(config, lambda event: emit({**event, "task": task.value}))
        timings[task.value] = time.monotonic() - begin
        return folder

    caption = run(Task.CAPTION, SCRATCH, recipe.caption_steps, recipe.caption_lr, recipe.batch_size)
    run(Task.VQA, str(caption), recipe.vqa_steps, recipe.finetune_lr, recipe.vqa_images_per_batch)
    run(Task.ITM, str(caption), recipe.itm_steps, recipe.finetune_lr, recipe.batch_size)
    timings["training_total"] = time.monotonic() - started
    reports = {}
    for task in Task:
        reports[task.value] = finish_model(task, work / FOLDER[task], out / FOLDER[task], data, recipe,
                                           timings, emit)
    emit({"event": "recipe-done", "minutes": round(timings["training_total"] / 60, 1), "timings": timings})
    return reports


def finish_model(task: Task, trained: Path, target: Path, data: dict, recipe: Recipe, timings: dict,
                 emit: Emit) -> dict:
    """Pick the attention layer on the selection set, measure on the validation set, write the card."""
    from mmstudio.engine import Engine
    from mmstudio.training.evaluate import evaluate_adapter, pick_default_layer

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in trained.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    hints = {}
    if task != Task.ITM:
        adapter = Engine().adapter(task, str(target))
        selection = evaluate_adapter(adapter, data["select"], attention=True)
        key = "caption_layer" if task == Task.CAPTION else "vqa_layer"
        layer = pick_default_layer(selection)
        hints[key] = layer if layer == "mean" else int(layer)
        emit({"event": "layer-choice", "task": task.value, "pointing_by_layer": selection.pointing_by_layer,
              "chosen": layer})
    record = json.loads((target / RUN_RECORD).read_text()) if (target / RUN_RECORD).is_file() else {}
    record["attention"] = hints
    write_json_atomic(target / RUN_RECORD, record)
    adapter = Engine().adapter(task, str(target))
    report = evaluate_adapter(adapter, data["valid"], attention=task != Task.ITM)
    emit({"event": "measured", "task": task.value, **report.as_dict()})
    record["validation"] = report.as_dict()
    write_json_atomic(target / RUN_RECORD, record)
    return report.as_dict()


def with_steps(recipe: Recipe, scale: float) -> Recipe:
    """A shorter (or longer) recipe, for smoke tests of the recipe itself."""
    return replace(recipe, caption_steps=max(2, int(recipe.caption_steps * scale)),
                   vqa_steps=max(2, int(recipe.vqa_steps * scale)), itm_steps=max(2, int(recipe.itm_steps * scale)))

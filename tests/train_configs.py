"""A TrainConfig with every field away from its default: what round trips and reaches must carry.

A new TrainConfig field fails `test_the_table_covers_every_field` until it has a value here, and then
every test that uses the table checks it reaches the JSON document, the flags and the Train panel.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mmstudio.models.base import Task
from mmstudio.training.config import TrainConfig


def every_field_changed(folder: Path) -> TrainConfig:
    folder = Path(folder)
    return TrainConfig(
        task=Task.VQA, data=folder / "data", out=folder / "out", base=str(folder / "base"), steps=77, epochs=2.5,
        batch_size=6, learning_rate=0.0003, warmup_ratio=0.125, weight_decay=0.01, seed=1234, resume=True,
        eval_data=folder / "eval", eval_every=9, eval_samples=33, save_every=11, log_every=3, max_minutes=2.5,
        size="tiny", questions_per_image=2, negatives_per_image=3, order_share=0.25, partial_share=0.5,
        partial_itc_weight=0.75, rows=40,
        pixel_cache=folder / "pixels", lora=True, lora_rank=4, threads=2, bf16=False, grounding=False,
        allow_missing_weights=True, vision_trainable_layers=1,
    )


def as_flags(config: TrainConfig) -> list[str]:
    """The same settings written by hand as `mmstudio train` flags (the test's, not the product's, mapping)."""
    c = config
    return ["train", "--task", c.task.value, "--data", str(c.data), "--out", str(c.out), "--base", c.base,
            "--steps", str(c.steps), "--epochs", str(c.epochs), "--batch-size", str(c.batch_size),
            "--lr", str(c.learning_rate), "--warmup", str(c.warmup_ratio), "--weight-decay", str(c.weight_decay),
            "--seed", str(c.seed), "--resume", "--eval-data", str(c.eval_data), "--eval-every", str(c.eval_every),
            "--eval-samples", str(c.eval_samples), "--save-every", str(c.save_every),
            "--log-every", str(c.log_every), "--max-minutes", str(c.max_minutes), "--size", c.size,
            "--questions-per-image", str(c.questions_per_image),
            "--negatives-per-image", str(c.negatives_per_image), "--order-share", str(c.order_share),
            "--partial-share", str(c.partial_share), "--partial-itc-weight", str(c.partial_itc_weight),
            "--rows", str(c.rows), "--pixel-cache", str(c.pixel_cache), "--lora", "--lora-rank", str(c.lora_rank),
            "--threads", str(c.threads), "--no-bf16", "--no-grounding", "--allow-missing-weights",
            "--vision-trainable-layers", str(c.vision_trainable_layers)]


def changed_fields(config: TrainConfig) -> set[str]:
    default = TrainConfig(task=Task.CAPTION, data=Path("d"), out=Path("o"))
    return {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(default, f.name)}

"""The settings of one training run: a frozen dataclass, saved and read as a versioned JSON document.

A job's subprocess is started with this document (`mmstudio train --config FILE`), the job store
keeps it to resume from, and the CLI's flags build the same dataclass: one set of settings, three
ways in. Its document is `{"kind": "train", "version": 1, ...fields}` (mmstudio/documents.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mmstudio import documents
from mmstudio import validation as check
from mmstudio.errors import SettingsError
from mmstudio.models.base import Task
from mmstudio.training.blank import SIZES

SCRATCH = "scratch"  # the base of a model trained from nothing
JOB_FILE = "mmstudio-job.json"  # a job's settings, written into its run folder as it starts


@dataclass(frozen=True)
class TrainConfig(documents.Document):
    KIND: ClassVar[str] = "train"
    VERSION: ClassVar[int] = 1
    UPGRADES: ClassVar[dict] = {}  # version N -> a function making a version-N document version N+1

    task: Task
    data: Path
    out: Path
    base: str | None = None  # None: the task's built-in model; "scratch": untrained; else a model or another BLIP head
    steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.05
    seed: int = 0
    resume: bool = False
    eval_data: Path | None = None
    eval_every: int = 0  # steps; 0: only at the end when eval_data is given
    eval_samples: int = 200
    save_every: int = 200
    log_every: int = 10
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training time
    size: str = "small"  # architecture of a scratch model
    questions_per_image: int = 4
    negatives_per_image: int = 1  # ITM: written hard negatives per image in each batch
    order_share: float = 0.0  # ITM: how often one of them is the caption's words in another order, where any is
    # ITM on data with objects (Shapes World): the share of images that also get a true partial description (some
    # of its objects, maybe without size or colour) and a near miss of it, as extra pairs for the ITM head.
    partial_share: float = 0.0
    # ITM: weight of a text-to-image ITC term over those true partial descriptions (what a search query asks),
    # beside the captions' ITC. 0: the partials teach the ITM head only.
    partial_itc_weight: float = 0.0
    rows: int | None = None  # train on the first N rows of the data only
    pixel_cache: Path | None = None  # keep the resized training images here for later runs on the same files
    lora: bool = False
    lora_rank: int = 8
    threads: int | None = None
    bf16: bool | None = None  # mixed precision; None: where the hardware runs it fast (CUDA bf16, CPU AMX)
    grounding: bool | None = None  # the patch-label head; None: on when training from scratch on data with boxes
    # How many of the vision tower's top layers learn (with its final norm); the rest stay as the base has them
    # (LLaMA-Factory's freeze_vision_tower and freeze_trainable_layers). None: the whole tower; 0: none of it.
    # Less backward work a step, and the image features stay those the base model was trained to see with.
    vision_trainable_layers: int | None = None
    allow_missing_weights: bool = False  # start from a --base that lacks weights its config asks for

    def validate(self) -> None:
        """Raise SettingsError naming the first field out of range.

        The CLI checks its flags the same way, but the app builds configs directly (and configs may come
        from JSON files), so a 0 batch size or a NaN learning rate must be caught here too, before a
        ZeroDivisionError or a run that learns nothing.
        """
        documents.check_fields(self, (("task", _task),))
        if self.size not in SIZES:
            raise SettingsError("size", f"must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.base is not None and not isinstance(self.base, str):
            raise SettingsError("base", f"must be a model name or folder, got {self.base!r}")
        documents.check_fields(self, _FIELD_CHECKS)
        if self.vision_trainable_layers is not None and self.base == SCRATCH:
            raise SettingsError("vision_trainable_layers", "keeps part of the base's vision tower, and a model "
                                "trained from scratch has none worth keeping: train it whole, or pick a base")
        if self.vision_trainable_layers == 0 and self.grounding:
            raise SettingsError("grounding", "teaches the vision tower, which vision_trainable_layers 0 keeps as "
                                             "it is: turn one of them off")



_FIELD_CHECKS = (
    ("data", check.non_empty_path), ("out", check.non_empty_path),
    ("eval_data", check.optional(check.non_empty_path)), ("pixel_cache", check.optional(check.non_empty_path)),
    ("steps", check.optional(check.positive_int)), ("epochs", check.positive_float),
    ("batch_size", check.positive_int), ("learning_rate", check.positive_float),
    ("warmup_ratio", check.fraction_below_one), ("weight_decay", check.non_negative_float),
    ("seed", check.seed), ("resume", check.boolean), ("eval_every", check.non_negative_int),
    ("eval_samples", check.positive_int), ("save_every", check.positive_int), ("log_every", check.positive_int),
    ("max_minutes", check.optional(check.non_negative_float)), ("questions_per_image", check.positive_int),
    ("negatives_per_image", check.non_negative_int), ("order_share", check.probability),
    ("partial_share", check.probability), ("partial_itc_weight", check.non_negative_float),
    ("rows", check.optional(check.positive_int)), ("lora", check.boolean), ("lora_rank", check.positive_int),
    ("threads", check.optional(check.positive_int)), ("bf16", check.optional_boolean),
    ("grounding", check.optional_boolean), ("allow_missing_weights", check.boolean),
    ("vision_trainable_layers", check.optional(check.non_negative_int)),
)


@dataclass(frozen=True)
class EvalConfig(documents.Document):
    """The settings of one `mmstudio eval` run (`--config FILE` or flags, as for training)."""

    KIND: ClassVar[str] = "eval"
    VERSION: ClassVar[int] = 1
    UPGRADES: ClassVar[dict] = {}

    task: Task
    data: Path
    model: str | None = None  # None: the task's built-in model
    limit: int | None = None  # only the first N scenes
    attention: bool = True  # pointing accuracy of the evidence maps (slower)
    batch_size: int = 64
    device: str | None = None  # None: $MMSTUDIO_DEVICE, else auto
    dtype: str | None = None  # None: $MMSTUDIO_DTYPE, else fp32

    def validate(self) -> None:
        documents.check_fields(self, (
            ("task", _task), ("data", check.non_empty_path), ("limit", check.optional(check.positive_int)),
            ("attention", check.boolean), ("batch_size", check.positive_int),
            ("device", check.optional(check.device)), ("dtype", check.optional(check.dtype))))
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise SettingsError("model", f"must be a model folder, hub id or builtin:NAME, got {self.model!r}")


def _task(value) -> str | None:
    try:
        Task(value)
    except ValueError:
        return f"must be one of {', '.join(t.value for t in Task)}, got {value!r}"
    return None

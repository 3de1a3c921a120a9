"""`mmstudio train`: prepare a job (validate data, pick the base), then run it on HF Trainer.

`prepare()` is pure checking and building, so the GUI's "Check data" and the
CLI share it; `train()` runs the job and reports progress through a callback,
one event dict at a time (the CLI prints them as JSON lines).
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

from mmstudio.errors import DatasetError, MMStudioError, ModelLoadError, SettingsError
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.blip import BlipAdapter, load_image_processor
from mmstudio.models.common import architecture_names, check_token_ids_of_config, from_pretrained, load_error
from mmstudio.models.completeness import ALLOW_FLAG, few
from mmstudio.models.loading import builtin_name, quiet_transformers, read_config, resolve
from mmstudio.models.memory import check_fits
from mmstudio.storage import check_writable_folder, disk_errors
from mmstudio.training.blank import ARCHITECTURE_FOR_TASK, build_model, save_checkpoint
from mmstudio.training.checkpoints import (
    CHECKPOINTS,
    RUN_RECORD,
    publish_model,
    read_manifest,
    read_run_record,
    resume_point,
    seal_checkpoint,
    set_aside,
    write_json_atomic,
)
from mmstudio.training.config import JOB_FILE, SCRATCH, TrainConfig
from mmstudio.training.data import Dataset, PixelStore, check_new_words, read_dataset
from mmstudio.training.evaluate import evaluate_adapter
from mmstudio.training.lora import apply_lora, load_adapter, merged_copy, save_adapter
from mmstudio.world.vocab import EXTRA_COLORS, EXTRA_SHAPES, all_words

Emit = Callable[[dict], None]


# What a resumed run may not change: the model's shape (task, base, size, LoRA, grounding, its words), what the
# optimizer and scheduler states loaded from the checkpoint would silently override (learning rate, warmup,
# weight decay), and what decides which batch comes next (batch size, seed, items per image). Steps, epochs,
# evaluation, logging, saving, time limits, threads and the data's rows may change.
RESUME_FIXED = ("task", "base", "size", "lora", "lora_rank", "grounding", "words", "batch_size", "learning_rate",
                "warmup_ratio", "weight_decay", "seed", "questions_per_image", "negatives_per_image", "order_share",
                "partial_share", "partial_itc_weight", "vision_trainable_layers")

_FIELD_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)
                   if f.default is not MISSING}


@dataclass
class PreparedJob:
    config: TrainConfig
    dataset: Dataset
    base_description: str
    new_words: list[str] = field(default_factory=list)
    resume_from: Path | None = None
    damaged: list[tuple[Path, str]] = field(default_factory=list)  # newer checkpoints than resume_from, and why
    settings: dict = field(default_factory=dict)  # the RESUME_FIXED settings, kept in each checkpoint
    eval_dataset: Dataset | None = None  # read (and checked) once, here, for the evaluations of the run

    def summary(self) -> dict:
        return {"data": self.dataset.summary(), "base": self.base_description, "new_words": self.new_words,
                "resume_from": str(self.resume_from) if self.resume_from else None,
                "damaged": [f"{path.name}: {why}" for path, why in self.damaged]}


def prepare(config: TrainConfig) -> PreparedJob:
    """Validate everything a run needs before anything starts. Raises MMStudioError subclasses."""
    config.validate()
    config = replace(config, task=Task(config.task), data=Path(config.data), out=Path(config.out))
    dataset = read_dataset(config.data, config.task, rows=config.rows)
    eval_dataset = read_dataset(config.eval_data, config.task) if config.eval_data is not None else None
    # A read-only, full or mistyped --out fails here, not after the model is built and trained.
    check_writable_folder(config.out, "the output folder")
    resume_from, damaged = None, []
    if config.resume:
        # No complete checkpoint yet (a job killed early): resuming means starting over in the same folder.
        resume_from, damaged = resume_point(config.out)
    elif config.out.exists() and any(item.name != JOB_FILE for item in config.out.iterdir()):
        # (a job writes its settings into the folder before its process checks it)
        raise MMStudioError(f"{config.out} is not empty: choose a new output folder, or --resume this run")
    if config.base in (None, "") or config.base == SCRATCH:
        base_description = SCRATCH if config.base == SCRATCH else f"built-in {config.task.value} model"
    else:
        resolved = resolve(config.base)
        archs = resolved.config.get("architectures") or ["?"]
        base_description = f"{resolved.path} ({archs[0]})"
    new_words = []
    if config.base != SCRATCH:
        new_words = sorted(dataset.words() - _base_vocabulary(config))
    # Before the model is built: a column of prose as captions would grow it by millions of parameters.
    # A scratch model's vocabulary is made of the data's words, so the same cap holds for it.
    check_new_words(dataset, new_words if config.base != SCRATCH else sorted(dataset.words()))
    settings = _fixed_settings(config, dataset, new_words)
    if resume_from is not None:
        _check_unchanged(config, resume_from, settings)
    return PreparedJob(config, dataset, base_description, new_words, resume_from, damaged, settings, eval_dataset)


def _fixed_settings(config: TrainConfig, dataset: Dataset, new_words: list[str]) -> dict:
    if config.base == SCRATCH:  # a scratch model's vocabulary is the world's words and the data's, in order
        words = sorted(dataset.words() - set(all_words()) - set(all_words(EXTRA_SHAPES, EXTRA_COLORS)))
    else:
        words = list(new_words)
    settings = {name: getattr(config, name) for name in RESUME_FIXED if hasattr(config, name)}
    settings.update(task=config.task.value, base=config.base or None, words=words,
                    grounding=_use_grounding(config, dataset))
    if config.base != SCRATCH:
        settings.pop("size")  # only a scratch model is built by size
    if not config.lora:
        settings.pop("lora_rank")
    return settings


def _check_unchanged(config: TrainConfig, checkpoint: Path, settings: dict) -> None:
    """Refuse to resume with a setting that changes the model or what the loaded states stand for."""
    manifest = read_manifest(checkpoint)
    if manifest is not None:
        before = manifest.get("settings", {})
    else:  # a checkpoint from before manifests: the run record of a stopped run, where there is one
        # (grounding and words are recorded there as asked, not as resolved: not comparable)
        before = {k: v for k, v in read_run_record(config.out).get("config", {}).items()
                  if k in settings and k not in ("grounding", "words")}
    changed = []
    for name in RESUME_FIXED:
        if name in before or (manifest is not None and name in settings):
            # A manifest older than a field was written by a run that used the field's default.
            old, new = before.get(name, _FIELD_DEFAULTS.get(name)), settings.get(name)
            if old != new and not (name == "lora_rank" and None in (old, new)):
                changed.append((name, old, new))
    if not changed:
        return
    lines = []
    for name, old, new in changed:
        if name == "words":
            added = sorted(set(new or []) - set(old or []))
            lines.append(f"the data has words the run did not start with ({', '.join(added) or 'a different set'})")
        else:
            lines.append(f"{name} was {old!r}, now {new!r}")
    raise SettingsError(changed[0][0], "changed since the run started", message=(
        f"cannot resume {config.out} from {checkpoint.name}: " + "; ".join(lines) + ". Resume with the "
        f"settings the run started with, or start a new run from it (--base {checkpoint})."))


def _base_vocabulary(config: TrainConfig) -> set[str]:
    from transformers import AutoTokenizer

    path = resolve(config.base or builtin_name(config.task)).path
    try:
        return set(AutoTokenizer.from_pretrained(path, trust_remote_code=False).get_vocab())
    except Exception as exc:  # noqa: BLE001 - a broken or hostile tokenizer fails in many ways

        raise load_error(path, "BLIP", exc) from None


# ---------------------------------------------------------------- the model


def build_start_model(job: PreparedJob):
    """(model, processor, note) the run starts from."""
    from transformers import AutoTokenizer, BlipProcessor

    config = job.config
    if config.base == SCRATCH:
        words = set(all_words()) | set(all_words(EXTRA_SHAPES, EXTRA_COLORS)) | job.dataset.words()
        model, processor = build_model(config.task, sorted(words), config.size, seed=config.seed)
        return model, processor, "untrained"
    resolved = resolve(config.base or builtin_name(config.task))
    target = ARCHITECTURE_FOR_TASK[config.task]
    import transformers

    strict = not config.allow_missing_weights
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=False)
        processor = BlipProcessor(image_processor=load_image_processor(resolved.path), tokenizer=tokenizer)
        if target in architecture_names(resolved.config):
            # The same head: every tensor must come from the base (fp32, the precision training keeps).
            model = from_pretrained(getattr(transformers, target), resolved,
                                    LoadOptions(device="cpu", dtype="fp32", strict=strict))
            note = f"fine-tuning {resolved.path}"
        else:
            model, copied = _warm_start(getattr(transformers, target), resolved.path, tokenizer.cls_token_id,
                                        strict=strict)
            note = f"new {target} head, {copied} weight tensors taken from {resolved.path}"
    except (OSError, ValueError, RuntimeError, AttributeError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"{resolved.path}: cannot load as a training base: "
                             f"{' '.join(str(exc).split())[:400]}") from None
    if job.new_words:
        from mmstudio.training.vocabulary import extend_vocabulary  # a torch module: loaded only to train

        extend_vocabulary(model, processor.tokenizer, job.new_words)
    return model, processor, note


def _warm_start(cls, path: Path, cls_token_id: int | None = None, *, strict: bool = True):
    """A fresh head of `cls` with every same-named, same-shaped tensor of another BLIP checkpoint.

    A retrieval head taken from a caption model gets its text encoder from the caption decoder's BERT,
    as BLIP shares those weights between its encoder and decoder: that decoder already ties each word
    to its object in left-to-right order (a fresh encoder, or a VQA question encoder, learns word order
    slowly). The encoder's [CLS] row starts as the decoder's [DEC] row, the token both read first.
    The text parts are partial by design, but every head shares the vision encoder: unless `strict` is
    off, a base without the whole of it is refused (the new head would start from random vision).
    """
    import torch
    from safetensors.torch import load_file
    from transformers import BlipConfig

    settings = read_config(Path(path))
    check_token_ids_of_config(path, settings)
    check_fits(path, cls, {**settings, "architectures": [cls.__name__]}, dtype=torch.float32)
    config = BlipConfig.from_pretrained(path, trust_remote_code=False)
    config.architectures = [cls.__name__]
    model = cls(config)
    source = {}
    # model*.safetensors only: a built-in folder also holds in-domain.safetensors, statistics, not weights.
    for file in sorted(Path(path).glob("model*.safetensors")):
        source.update(load_file(str(file)))
    own = model.state_dict()
    if _encoder_from_decoder(own, source):
        prefix = "text_decoder.bert."
        source.update({"text_encoder." + k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)})
        rows = "text_encoder.embeddings.word_embeddings.weight"
        if cls_token_id is not None and rows in source:
            source[rows] = source[rows].clone()
            source[rows][cls_token_id] = source[rows][config.text_config.bos_token_id]
    usable = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    vision = sorted(k for k in own if k.startswith("vision_model."))
    lacking = [k for k in vision if k not in usable]
    if strict and lacking:
        raise ModelLoadError(
            f"{path}: a new {cls.__name__} head starts from this model's vision encoder, but {len(lacking)} of its "
            f"{len(vision)} tensors are missing or of another shape ({few(lacking)}). Start from a complete BLIP "
            f"model, or anyway with {ALLOW_FLAG} (those parts start random).")
    model.load_state_dict(usable, strict=False)
    model.tie_weights()
    return model, len(usable)


def _encoder_from_decoder(own: dict, source: dict) -> bool:
    """True for a retrieval head (a text encoder, no decoder) warm-started from a caption model."""
    def has(keys, prefix):
        return any(k.startswith(prefix) for k in keys)

    return (has(own, "text_encoder.") and not has(own, "text_decoder.")
            and has(source, "text_decoder.bert.") and not has(source, "text_encoder."))


# ------------------------------------------------------------------ the run


class _StopRequest:
    """SIGINT/SIGTERM ask the run to save a checkpoint and end at the next step."""

    def __init__(self):
        self.requested = False
        self.reason = ""
        self._previous: dict = {}

    def install(self) -> None:
        def handler(signum, _frame):
            self.requested = True
            self.reason = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (tests call train() from threads): no handlers then
                return

    def uninstall(self) -> None:
        """After training, Ctrl+C and SIGTERM mean what they always mean again."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def train(config: TrainConfig, emit: Emit = lambda event: None) -> Path:
    """Run a training job to the end (or to a requested stop); returns the output folder."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from mmstudio.training.objectives import OBJECTIVES, Collator  # torch modules: loaded only to train

    quiet_transformers()
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports; the others train silently
        emit = lambda event: None  # noqa: E731
    job = prepare(config)
    config = job.config
    if config.threads:
        torch.set_num_threads(config.threads)
    emit({"event": "prepared", **job.summary()})
    _set_aside_damaged(job, emit)
    model, processor, note = build_start_model(job)
    if config.lora:
        words = processor.tokenizer.convert_tokens_to_ids(sorted(job.dataset.words()))
        model = apply_lora(model, config.task, config.lora_rank, token_ids=[*words, processor.tokenizer.sep_token_id])
    if config.vision_trainable_layers is not None:
        keep_vision_layers(model, config.vision_trainable_layers)
    emit({"event": "model", "note": note, "parameters": sum(p.numel() for p in model.parameters()),
          "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)})
    pixels = PixelStore(job.dataset, processor.image_processor, cache=config.pixel_cache)
    grounding = _use_grounding(config, job.dataset)
    vision = model.config.vision_config
    collator = Collator(config.task, job.dataset, pixels, processor.tokenizer,
                        questions_per_image=config.questions_per_image,
                        negatives_per_image=config.negatives_per_image, order_share=config.order_share,
                        partial_share=config.partial_share, partial_true_of=config.partial_itc_weight > 0,
                        seed=config.seed,
                        grid_side=vision.image_size // vision.patch_size if grounding else 0)
    items = collator.items()
    objective = OBJECTIVES[config.task](model, grounding=grounding, **(
        {"partial_itc_weight": config.partial_itc_weight} if config.task is Task.ITM else {}))
    per_epoch = max(1, math.ceil(len(items) / config.batch_size))
    total = config.steps or max(1, int(round(per_epoch * config.epochs)))
    start_step = _state_step(job.resume_from) if job.resume_from is not None else 0
    # Trainer, given a checkpoint at its last step, trains one step more ("step 5/4"): it is not asked.
    finished_before = job.resume_from is not None and start_step >= total
    if finished_before:
        record = read_run_record(config.out)
        if record.get("finished") and record.get("steps") == start_step and (config.out / "config.json").is_file():
            emit({"event": "done", "out": str(config.out), "step": start_step, "total": total, "finished": True,
                  "metrics": record.get("metrics", {}), "already_finished": True})
            return config.out
    stop = _StopRequest()
    stop.install()
    evaluator = _Evaluator(config, job.eval_dataset, processor, objective, collator.grid_side) \
        if job.eval_dataset is not None else None

    args = TrainingArguments(
        output_dir=str(config.out / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        max_steps=total,
        lr_scheduler_type="cosine",
        warmup_steps=int(total * config.warmup_ratio),
        weight_decay=config.weight_decay,
        logging_steps=config.log_every,
        save_strategy="steps",
        save_steps=config.save_every,
        save_total_limit=2,
        report_to=[],
        seed=config.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=_bf16_ok(torch) if config.bf16 is None else config.bf16,
        max_grad_norm=1.0,
    )
    started = time.monotonic()
    state_box = {"last_loss": None}

    class Progress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                emit({"event": "start", "step": state.global_step, "total": state.max_steps,
                      "world_size": args.world_size})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            elapsed = time.monotonic() - started
            done = max(1, state.global_step - start_step)
            eta = elapsed / done * (state.max_steps - state.global_step)
            state_box["last_loss"] = logs["loss"]
            emit({"event": "progress", "step": state.global_step, "total": state.max_steps,
                  "epoch": round(state.epoch or 0.0, 4), "loss": round(float(logs["loss"]), 6),
                  "lr": float(logs.get("learning_rate", 0.0)), "elapsed": round(elapsed, 2),
                  "eta": round(eta, 2)})

        def on_step_end(self, args, state, control, **kwargs):
            over_time = config.max_minutes is not None and time.monotonic() - started > config.max_minutes * 60
            if stop.requested or over_time:
                control.should_save = True
                control.should_training_stop = True
                if state.is_world_process_zero:
                    emit({"event": "stopping", "step": state.global_step,
                          "reason": stop.reason or "time limit"})
            if evaluator and config.eval_every and state.global_step % config.eval_every == 0 \
                    and state.is_world_process_zero:
                emit({"event": "eval", "step": state.global_step, "metrics": evaluator(model)})

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                emit({"event": "checkpoint", "step": state.global_step,
                      "path": str(Path(args.output_dir) / f"checkpoint-{state.global_step}")})

    class ObjectiveTrainer(Trainer):
        def _save(self, output_dir=None, state_dict=None):
            if not self.args.should_save:
                return
            _save_model(model, processor, Path(output_dir or self.args.output_dir), config)

        def _load_from_checkpoint(self, resume_from_checkpoint, model_=None):
            _load_weights(model, Path(resume_from_checkpoint))

        def _save_checkpoint(self, model_, trial):
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            with disk_errors(folder, "cannot save the checkpoint"):
                super()._save_checkpoint(model_, trial)
                if self.args.should_save:
                    seal_checkpoint(folder, job.settings)

    trainer = ObjectiveTrainer(model=objective, args=args, train_dataset=_Items(items), data_collator=collator,
                               callbacks=[Progress()])
    trainer.remove_callback(PrinterCallback)  # our Progress callback reports instead
    if job.resume_from is not None:
        emit({"event": "resume", "from": str(job.resume_from), "step": start_step})
    try:
        if finished_before:  # its last checkpoint was saved but not the final model: publish that checkpoint
            _load_weights(model, job.resume_from)
        else:
            trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)
    finally:
        stop.uninstall()
    step = start_step if finished_before else trainer.state.global_step
    if not trainer.is_world_process_zero():
        return config.out
    finished = step >= total
    metrics = evaluator(model) if evaluator else {}
    if metrics:
        emit({"event": "eval", "step": step, "metrics": metrics})
    staging = config.out / ".final-staging"
    record = {"task": config.task.value, "base": job.base_description, "data": str(config.data),
              "steps": step, "total": total, "finished": finished, "metrics": metrics,
              "loss": state_box["last_loss"], "config": _jsonable(asdict(config)),
              "attention": read_run_record(config.out).get("attention", {})}
    with disk_errors(config.out, "cannot save the trained model to"):
        _save_model(model, processor, staging, config)
        publish_model(staging, config.out)
        write_json_atomic(config.out / RUN_RECORD, record)
    emit({"event": "done", "out": str(config.out), "step": step, "total": total, "finished": finished,
          "metrics": metrics})
    return config.out


def _set_aside_damaged(job: PreparedJob, emit: Emit) -> None:
    """Say which checkpoints are damaged and move them aside, so a new save of the same step starts clean."""
    if os.environ.get("RANK", "0") != "0":
        return
    where = f"resuming from {job.resume_from.name}" if job.resume_from else "starting over"
    for path, why in job.damaged:
        with disk_errors(path.parent, "cannot move aside the damaged checkpoint in"):
            aside = set_aside(path)
        emit({"event": "damaged", "path": str(path), "reason": why, "moved_to": str(aside),
              "message": f"{path.name} is damaged ({why}); {where}"})


class _Items:
    """A map-style dataset of item indices (the collator builds the tensors)."""

    def __init__(self, items: list[int]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return {"index": self.items[i]}


def _save_model(model, processor, folder: Path, config: TrainConfig) -> None:
    if config.lora:
        save_checkpoint(merged_copy(model), processor, folder)
        save_adapter(model, folder)
        return
    save_checkpoint(model, processor, folder)


def _load_weights(model, checkpoint: Path) -> None:
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        load_adapter(model, checkpoint)
        return
    state = {}
    try:
        for file in sorted(checkpoint.glob("model*.safetensors")):
            state.update(load_file(str(file)))
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as exc:  # noqa: BLE001 - safetensors' own error, torch's size mismatches
        raise ModelLoadError(f"{checkpoint}: cannot continue from this checkpoint: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    model.tie_weights()
    if unexpected:
        raise ModelLoadError(f"{checkpoint}: checkpoint does not fit the model ({len(unexpected)} unknown tensors)")


def _state_step(checkpoint: Path) -> int:
    import json

    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (Path, Task)):
        return str(value.value if isinstance(value, Task) else value)
    return value


class _Evaluator:
    """Eval loss (the training objective on held-out rows) and quick task metrics, on the in-memory model."""

    def __init__(self, config: TrainConfig, dataset: Dataset, processor, objective, grid_side: int):
        self.config = config
        self.processor = processor
        self.objective = objective
        self.dataset = dataset
        self.pixels = PixelStore(self.dataset, processor.image_processor)
        # The same loss as training (grounding included when the eval rows have boxes), so the curves compare.
        self.grid_side = grid_side if self.dataset.has_objects() else 0

    def __call__(self, model) -> dict:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        was_training = inner.training
        inner.eval()
        try:
            metrics = {"eval_loss": round(self.loss(), 6)}
            adapter = BlipAdapter(inner, self.processor.tokenizer, self.processor.image_processor,
                                  name="training", path=self.config.out)
            report = evaluate_adapter(adapter, self.dataset, limit=self.config.eval_samples,
                                      attention=False)
        finally:
            inner.train(was_training)
        return {**metrics, **report.headline()}

    def loss(self) -> float:
        import torch

        from mmstudio.training.objectives import Collator

        # A fresh collator with the run's seed each time: every evaluation sees the very same batches.
        collator = Collator(self.config.task, self.dataset, self.pixels, self.processor.tokenizer,
                            questions_per_image=self.config.questions_per_image,
                            negatives_per_image=self.config.negatives_per_image,
                            order_share=self.config.order_share, partial_share=self.config.partial_share,
                            partial_true_of=self.config.partial_itc_weight > 0, seed=self.config.seed,
                            grid_side=self.grid_side)
        items = collator.items()[:self.config.eval_samples]
        device = next(self.objective.parameters()).device
        total = count = 0
        with torch.no_grad():
            for start in range(0, len(items), self.config.batch_size):
                chunk = items[start:start + self.config.batch_size]
                batch = {k: v.to(device) for k, v in collator(chunk).items()}
                total += float(self.objective(**batch)["loss"]) * len(chunk)
                count += len(chunk)
        return total / max(1, count)


def keep_vision_layers(model, trainable: int) -> None:
    """Keep the vision tower's weights as loaded (LoRA adapters on them too) but for its top `trainable` layers
    and its final norm: the optimizer skips the kept ones. As many as the tower has, or more: all learn."""
    vision = next(module for name, module in model.named_modules() if name.rsplit(".", 1)[-1] == "vision_model")
    layers = vision.encoder.layers
    if trainable >= len(layers):
        return
    kept = [vision.embeddings, *layers[:len(layers) - trainable]] + ([] if trainable else [vision.post_layernorm])
    for module in kept:
        module.requires_grad_(False)


def _use_grounding(config: TrainConfig, dataset: Dataset) -> bool:
    wanted = config.base == SCRATCH if config.grounding is None else config.grounding
    if wanted and not dataset.has_objects():
        if config.grounding:
            raise DatasetError(f"{dataset.folder}: --grounding needs objects with boxes, width and height in every row")
        return False
    return wanted


def _bf16_ok(torch) -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_bf16_ok()


def cpu_bf16_ok() -> bool:
    try:  # CPUs with AMX or AVX512-BF16 run bf16 matmuls about twice as fast as fp32
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags



__all__ = ["TrainConfig", "PreparedJob", "prepare", "train", "SCRATCH"]

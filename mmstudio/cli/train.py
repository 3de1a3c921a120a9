"""`mmstudio train`: fine-tune or train a model on an imagefolder dataset."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from mmstudio.cli import options
from mmstudio.cli.options import (
    fraction_below_one,
    non_empty,
    non_empty_path,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    seed,
)
from mmstudio.errors import DatasetError, MMStudioError
from mmstudio.models.base import Task
from mmstudio.training.config import TrainConfig
from mmstudio.training.run import prepare, train

REQUIRED = ("task", "data", "out")  # without --config


def register(commands) -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    p = commands.add_parser(
        "train", help="train a caption, VQA or ITM model (HF Trainer; works under torchrun)",
        description="Train from flags, or from a config file (--config, as the app's jobs do). With both, "
                    "each flag given replaces that setting of the file: --config run.json --steps 900 --resume.")
    p.add_argument("--config", type=non_empty_path, metavar="FILE",
                   help='a train config (JSON: {"kind": "train", "version": 1, ...}), as the app writes into '
                        "each run folder (mmstudio-job.json)")
    # Each settings flag sets the TrainConfig field named by its dest, and only when given (SUPPRESS):
    # the defaults are TrainConfig's, and a flag given with --config replaces that field of the file.
    s = p.add_argument_group("settings", "each sets the config field of its name (default: the field's default)")
    s.argument_default = argparse.SUPPRESS

    def flag(name: str, *args, help: str = "", **kw) -> None:  # noqa: A002 - argparse's own keyword
        default = defaults.get(kw.get("dest") or name.lstrip("-").replace("-", "_"))
        if default is not None and default is not dataclasses.MISSING:
            help = f"{help} (default: {default})" if help else f"default: {default}"
        s.add_argument(name, *args, help=help or None, **kw)

    flag("--task", choices=("caption", "vqa", "itm"), help="required without --config")
    flag("--data", type=non_empty_path, help="imagefolder dataset (metadata.jsonl or .csv); required without --config")
    flag("--out", type=non_empty_path,
         help="output folder: the trained model, loadable as is; required without --config")
    flag("--base", type=non_empty,
         help="starting model (default: the built-in model of the task; 'scratch': untrained)")
    flag("--steps", type=positive_int, help="optimizer steps (default: from --epochs)")
    flag("--epochs", type=positive_float)
    flag("--batch-size", type=positive_int)
    flag("--lr", type=positive_float, dest="learning_rate")
    flag("--warmup", type=fraction_below_one, dest="warmup_ratio",
         help="share of the steps that warm the learning rate up (0 to below 1)")
    flag("--weight-decay", type=non_negative_float, help="AdamW weight decay")
    flag("--seed", type=seed)
    flag("--resume", action=argparse.BooleanOptionalAction,
         help="continue from the latest complete checkpoint in --out")
    flag("--eval-data", type=non_empty_path, help="dataset for metrics during and after training")
    flag("--eval-every", type=non_negative_int, help="steps (0: only at the end)")
    flag("--eval-samples", type=positive_int)
    flag("--save-every", type=positive_int)
    flag("--log-every", type=positive_int)
    flag("--max-minutes", type=non_negative_float, help="stop with a checkpoint after this many minutes")
    flag("--size", choices=("small", "small-fine", "tiny"), help="architecture of a scratch model")
    flag("--questions-per-image", type=positive_int, help="VQA: questions of each image in a batch")
    flag("--negatives-per-image", type=non_negative_int, help="ITM: written hard negatives of each image in a batch")
    flag("--order-share", type=probability,
         help="ITM: how often a negative is the caption's words in another order, where one exists")
    flag("--partial-share", type=probability,
         help="ITM on data with objects: share of images that also teach the ITM head a true partial "
              "description of them and a near miss")
    flag("--partial-itc-weight", type=non_negative_float,
         help="ITM: weight of the embedding (ITC) loss over those partial descriptions, beside the captions' "
              "(0: only the ITM head learns them)")
    flag("--rows", type=positive_int, help="train on the first N rows of the data only (default: all)")
    flag("--pixel-cache", type=non_empty_path,
         help="folder that keeps the resized training images for later runs on the same files")
    flag("--allow-missing-weights", action=argparse.BooleanOptionalAction,
         help="start from a --base whose folder lacks weights its config asks for (they start random)")
    flag("--lora", action=argparse.BooleanOptionalAction, help="train LoRA adapters (PEFT) instead of all weights")
    flag("--lora-rank", type=positive_int)
    flag("--threads", type=positive_int, help="CPU threads for torch")
    flag("--bf16", action=argparse.BooleanOptionalAction,
         help="bf16 mixed precision (default: where the hardware runs it fast: CUDA with bf16, CPUs with AMX)")
    flag("--grounding", action=argparse.BooleanOptionalAction,
         help="auxiliary patch-label loss from object boxes (default: on when training from scratch)")
    flag("--vision-trainable-layers", type=non_negative_int,
         help="train only the vision tower's top N layers (0: keep the whole tower as the base has it); "
              "default: all of it")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: one JSON object per line on stdout (for the app)")
    p.add_argument("--check", action="store_true", help="only validate the data and print the summary")
    p.set_defaults(run=run_train)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig a parsed `mmstudio train` command line stands for, checked."""
    def task(given: dict) -> dict:
        return {**given, "task": Task(given["task"])} if "task" in given else given

    return options.config_from_args(TrainConfig, args, REQUIRED, convert=task)


def run_train(args: argparse.Namespace) -> int:
    emit = _json_emit if args.progress == "json" else _text_emit
    try:
        config = config_from_args(args)  # a bad config file is an error event too: the app shows it
        if args.check:
            emit({"event": "prepared", **prepare(config).summary()})
            return 0
        train(config, emit)
    except DatasetError as exc:
        emit({"event": "error", "kind": "dataset", "message": str(exc), "problems": exc.problems})
        return 2
    except MMStudioError as exc:
        emit({"event": "error", "kind": type(exc).__name__, "message": str(exc)})
        return 2
    return 0


def _json_emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _text_emit(event: dict) -> None:
    kind = event.get("event")
    if kind == "progress":
        line = (f"step {event['step']}/{event['total']}  loss {event['loss']:.4f}  lr {event['lr']:.2e}  "
                f"elapsed {event['elapsed']:.0f}s  eta {event['eta']:.0f}s")
    elif kind == "eval":
        line = "eval @%d: " % event["step"] + "  ".join(f"{k} {v:.4f}" for k, v in event["metrics"].items())
    elif kind == "error":
        print(f"mmstudio: error: {event['message']}", file=sys.stderr)
        return
    elif kind == "prepared":
        line = f"data: {event['data']}\nbase: {event['base']}"
        if event.get("new_words"):
            line += f"\nnew words: {', '.join(event['new_words'])}"
    elif kind == "done" and event.get("already_finished"):
        line = (f"{event['out']} already finished ({event['step']}/{event['total']} steps): nothing to train "
                "(give more --steps to train it longer)")
    elif kind == "done":
        line = f"saved {event['out']} after {event['step']} steps"
    elif kind == "damaged":
        line = f"mmstudio: {event['message']}"
    else:
        line = " ".join(f"{k}={v}" for k, v in event.items())
    print(line, flush=True)

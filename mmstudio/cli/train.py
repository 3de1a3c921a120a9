"""`mmstudio train`: fine-tune or train a model on an imagefolder dataset."""

from __future__ import annotations

import argparse
import json
import sys

from mmstudio.cli.options import (fraction_below_one, non_empty, non_empty_path, non_negative_float,
                                  non_negative_int, positive_float, positive_int, seed)


def register(commands) -> None:
    p = commands.add_parser("train", help="train a caption, VQA or ITM model (HF Trainer; works under torchrun)")
    p.add_argument("--task", required=True, choices=("caption", "vqa", "itm"))
    p.add_argument("--data", type=non_empty_path, required=True,
                   help="imagefolder dataset (metadata.jsonl or .csv)")
    p.add_argument("--out", type=non_empty_path, required=True,
                   help="output folder: the trained model, loadable as is")
    p.add_argument("--base", type=non_empty,
                   help="starting model (default: the built-in model of the task; 'scratch': untrained)")
    p.add_argument("--steps", type=positive_int, help="optimizer steps (default: from --epochs)")
    p.add_argument("--epochs", type=positive_float, default=1.0)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-4, dest="learning_rate")
    p.add_argument("--warmup", type=fraction_below_one, default=0.05, dest="warmup_ratio",
                   help="share of the steps that warm the learning rate up (0 to below 1)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in --out")
    p.add_argument("--eval-data", type=non_empty_path, help="dataset for metrics during and after training")
    p.add_argument("--eval-every", type=non_negative_int, default=0, help="steps (0: only at the end)")
    p.add_argument("--eval-samples", type=positive_int, default=200)
    p.add_argument("--save-every", type=positive_int, default=200)
    p.add_argument("--log-every", type=positive_int, default=10)
    p.add_argument("--max-minutes", type=non_negative_float, help="stop with a checkpoint after this many minutes")
    p.add_argument("--size", default="small", choices=("small", "small-fine", "tiny"),
                   help="architecture of a scratch model")
    p.add_argument("--allow-missing-weights", action="store_true",
                   help="start from a --base whose folder lacks weights its config asks for (they start random)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (PEFT) instead of all weights")
    p.add_argument("--lora-rank", type=positive_int, default=8)
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--grounding", action=argparse.BooleanOptionalAction, default=None,
                   help="auxiliary patch-label loss from object boxes (default: on when training from scratch)")
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help="json: one JSON object per line on stdout (for the app)")
    p.add_argument("--check", action="store_true", help="only validate the data and print the summary")
    p.set_defaults(run=run_train)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig a parsed `mmstudio train` command line stands for."""
    from mmstudio.models.base import Task
    from mmstudio.training.run import TrainConfig

    fields = {k: getattr(args, k) for k in (
        "data", "out", "base", "steps", "epochs", "batch_size", "learning_rate", "warmup_ratio", "seed", "resume",
        "eval_data", "eval_every", "eval_samples", "save_every", "log_every", "max_minutes", "size", "lora",
        "lora_rank", "threads", "grounding", "allow_missing_weights")}
    return TrainConfig(task=Task(args.task), **fields)


def run_train(args: argparse.Namespace) -> int:
    from mmstudio.errors import DatasetError, MMStudioError
    from mmstudio.training.run import prepare, train

    config = config_from_args(args)
    emit = _json_emit if args.progress == "json" else _text_emit
    try:
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

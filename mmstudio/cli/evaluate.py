"""`mmstudio eval`: measure a model on a dataset (settings from flags or an eval config file)."""

from __future__ import annotations

import argparse
import json

from mmstudio.cli import options
from mmstudio.cli.options import DEVICE_HELP, DTYPE_HELP, device, non_empty, non_empty_path, positive_int
from mmstudio.engine import Engine
from mmstudio.models.base import LoadOptions, Task
from mmstudio.training.config import EvalConfig
from mmstudio.training.evaluate import evaluate_adapter
from mmstudio.validation import DTYPES


def register(commands) -> None:
    p = commands.add_parser("eval", help="measure a model on a dataset (exact match, BLEU-4, accuracy, recall, "
                                         "attention pointing)",
                            description="Evaluate from flags, or from a config file (--config). With both, each "
                                        "flag given replaces that setting of the file.")
    p.add_argument("--config", type=non_empty_path, metavar="FILE",
                   help='an eval config (JSON: {"kind": "eval", "version": 1, ...})')
    p.add_argument("--json", action="store_true")
    # As for `train`: a flag's dest is its EvalConfig field, set only when the flag is given.
    s = p.add_argument_group("settings", argument_default=argparse.SUPPRESS)
    s.add_argument("--task", choices=("caption", "vqa", "itm"), help="required without --config")
    s.add_argument("--model", type=non_empty,
                   help="model folder or builtin:NAME (default: the built-in model of the task)")
    s.add_argument("--data", type=non_empty_path, help="required without --config")
    s.add_argument("--limit", type=positive_int, help="only the first N scenes")
    s.add_argument("--no-attention", dest="attention", action="store_false",
                   help="skip pointing accuracy (faster)")
    s.add_argument("--device", type=device, help=DEVICE_HELP)
    s.add_argument("--dtype", choices=DTYPES, help=DTYPE_HELP)
    s.add_argument("--batch-size", type=positive_int, help="default: 64")
    p.set_defaults(run=run_eval)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    def task(given: dict) -> dict:
        return {**given, "task": Task(given["task"])} if "task" in given else given

    return options.config_from_args(EvalConfig, args, ("task", "data"), convert=task)


def run_eval(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    engine = Engine(LoadOptions.chosen(config.device, config.dtype))
    adapter = engine.adapter(Task(config.task), config.model)
    report = evaluate_adapter(adapter, config.data, limit=config.limit, attention=config.attention,
                              batch_size=config.batch_size, task=Task(config.task))
    print(json.dumps(report.as_dict()) if args.json else report.text())
    return 0

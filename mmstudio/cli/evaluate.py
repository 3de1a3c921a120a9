"""`mmstudio eval`: measure a model on a dataset."""

from __future__ import annotations

import argparse
import json

from mmstudio.cli.options import DEVICE_HELP, DTYPE_HELP, device, non_empty, non_empty_path, positive_int
from mmstudio.engine import Engine
from mmstudio.models.base import LoadOptions, Task
from mmstudio.training.evaluate import evaluate_adapter


def register(commands) -> None:
    p = commands.add_parser("eval", help="measure a model on a dataset (exact match, BLEU-4, accuracy, recall, "
                                         "attention pointing)")
    p.add_argument("--task", required=True, choices=("caption", "vqa", "itm"))
    p.add_argument("--model", type=non_empty,
                   help="model folder or builtin:NAME (default: the built-in model of the task)")
    p.add_argument("--data", type=non_empty_path, required=True)
    p.add_argument("--limit", type=positive_int, help="only the first N scenes")
    p.add_argument("--no-attention", action="store_true", help="skip pointing accuracy (faster)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    p.add_argument("--dtype", default=None, choices=("fp32", "fp16", "bf16"), help=DTYPE_HELP)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.set_defaults(run=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    engine = Engine(LoadOptions.chosen(args.device, args.dtype))
    adapter = engine.adapter(Task(args.task), args.model)
    report = evaluate_adapter(adapter, args.data, limit=args.limit, attention=not args.no_attention,
                              batch_size=args.batch_size)
    print(json.dumps(report.as_dict()) if args.json else report.text())
    return 0

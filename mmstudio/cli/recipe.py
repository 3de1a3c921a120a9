"""`mmstudio recipe`: retrain the three built-in models from scratch (the documented recipe)."""

from __future__ import annotations

import argparse
import json
import sys

from mmstudio.cli.options import non_empty_path, positive_float, positive_int
from mmstudio.cli.train import _json_emit, _text_emit
from mmstudio.training.recipe import Recipe, finish_all, run_recipe, with_steps


def register(commands) -> None:
    p = commands.add_parser("recipe", help="retrain the built-in caption, VQA and retrieval models from scratch")
    p.add_argument("--out", type=non_empty_path, required=True,
                   help="where the three model folders go (resources/models)")
    p.add_argument("--work", type=non_empty_path, required=True, help="scratch folder for data and training runs")
    p.add_argument("--scale", type=positive_float, default=1.0, help="multiply every step count (smoke tests: 0.001)")
    p.add_argument("--train-scenes", type=positive_int, help="training scenes (default 90000)")
    p.add_argument("--heldout", type=non_empty_path,
                   help="also measure on this dataset (e.g. from bench/heldout_world.py)")
    p.add_argument("--finish-only", action="store_true",
                   help="skip training: measure the models already trained in --work and publish them")
    p.add_argument("--reuse", action="store_true",
                   help="keep stages in --work already trained with the same settings (default: retrain all)")
    p.add_argument("--progress", choices=("text", "json"), default="text")
    p.set_defaults(run=run_recipe_command)


def run_recipe_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    recipe = with_steps(Recipe(), args.scale)
    if args.train_scenes:
        recipe = replace(recipe, train_scenes=args.train_scenes)
    emit = _json_emit if args.progress == "json" else _text_emit
    if args.finish_only:
        reports = finish_all(args.out, args.work, heldout=args.heldout, emit=emit)
    else:
        reports = run_recipe(args.out, args.work, recipe, emit, heldout=args.heldout, reuse=args.reuse)
    print(json.dumps({task: report.get("metrics", report) for task, report in reports.items()}, indent=2),
          file=sys.stdout)
    return 0

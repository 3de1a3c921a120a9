"""`mmstudio world generate`: Shapes World datasets."""

from __future__ import annotations

import argparse

from mmstudio.cli import options
from mmstudio.cli.options import non_empty_path, non_negative_int, positive_int
from mmstudio.storage import check_writable_folder, disk_errors
from mmstudio.world import generate_dataset
from mmstudio.world.config import GenerateConfig, canvas_side


def register(commands) -> None:
    world = commands.add_parser("world", help="Shapes World: generated scenes with known answers")
    sub = world.add_subparsers(dest="world_command", metavar="COMMAND", required=True)
    p = sub.add_parser("generate", help="write a dataset (imagefolder: images/ and metadata.jsonl)",
                       description="Generate from flags, or from a config file (--config, as the app does). "
                                   "With both, each flag given replaces that setting of the file.")
    p.add_argument("--config", type=non_empty_path, metavar="FILE",
                   help='a generate config (JSON: {"kind": "generate", "version": 1, ...})')
    # As for `train`: a flag's dest is its GenerateConfig field, set only when the flag is given.
    s = p.add_argument_group("settings", argument_default=argparse.SUPPRESS)
    s.add_argument("--out", type=non_empty_path, help="dataset folder (required without --config)")
    s.add_argument("--count", type=positive_int, help="number of scenes (required without --config)")
    s.add_argument("--seed", type=non_negative_int, help="default: 0")
    s.add_argument("--size", type=_canvas_side, help="canvas side in pixels (default: 96-256 at random)")
    s.add_argument("--shapes", type=_names,
                   help="comma-separated shapes (default: the four of the spec; hexagon also exists)")
    s.add_argument("--colors", type=_names,
                   help="comma-separated colors (default: the six of the spec; pink also exists)")
    s.add_argument("--workers", type=positive_int, help="default: 1")
    p.set_defaults(run=run_generate)


def _canvas_side(text: str) -> int:
    side = positive_int(text)
    problem = canvas_side(side)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return side


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(w.strip() for w in text.split(",") if w.strip()))  # each once, in order


def config_from_args(args: argparse.Namespace):
    """The GenerateConfig of a parsed command line, checked (SettingsError names the setting)."""
    return options.config_from_args(GenerateConfig, args, ("out", "count"))


def run_generate(args: argparse.Namespace) -> int:
    import time

    config = config_from_args(args)
    check_writable_folder(config.out, "--out")  # a read-only or mistyped --out fails before any scene is drawn
    started = time.monotonic()
    with disk_errors(config.out, "cannot write the dataset to"):
        generate_dataset(config.out, config.count, config.seed, shapes=config.shapes, colors=config.colors,
                         size=config.size, workers=config.workers)
    print(f"wrote {config.count} scenes to {config.out} in {time.monotonic() - started:.1f} s")
    return 0

"""`mmstudio world generate`: Shapes World datasets."""

from __future__ import annotations

import argparse

from mmstudio.cli.options import non_empty_path, non_negative_int, positive_int


def register(commands) -> None:
    world = commands.add_parser("world", help="Shapes World: generated scenes with known answers")
    sub = world.add_subparsers(dest="world_command", metavar="COMMAND", required=True)
    p = sub.add_parser("generate", help="write a dataset (imagefolder: images/ and metadata.jsonl)")
    p.add_argument("--out", type=non_empty_path, required=True)
    p.add_argument("--count", type=positive_int, required=True)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--size", type=_canvas_side, default=None, help="canvas side in pixels (default: 96-256 at random)")
    p.add_argument("--shapes", help="comma-separated shapes (default: the four of the spec; hexagon also exists)")
    p.add_argument("--colors", help="comma-separated colors (default: the six of the spec; pink also exists)")
    p.add_argument("--workers", type=positive_int, default=1)
    p.set_defaults(run=run_generate)


def _canvas_side(text: str) -> int:
    from mmstudio.world.scene import MIN_SIZE

    side = positive_int(text)
    if not MIN_SIZE // 2 <= side <= 4096:  # what sample_scene draws on
        raise argparse.ArgumentTypeError(f"must be from {MIN_SIZE // 2} to 4096 pixels, got {side}")
    return side


def _choice(text: str | None, default: tuple[str, ...], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    from mmstudio.errors import MMStudioError

    if not text:
        return default
    chosen = tuple(dict.fromkeys(w.strip() for w in text.split(",") if w.strip()))
    unknown = [w for w in chosen if w not in known]
    if unknown:
        raise MMStudioError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def run_generate(args: argparse.Namespace) -> int:
    import time

    from mmstudio.errors import MMStudioError
    from mmstudio.storage import check_writable_folder, disk_errors
    from mmstudio.world import COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES, generate_dataset

    if args.count < 1:
        raise MMStudioError("--count must be at least 1")
    shapes = _choice(args.shapes, SHAPES, SHAPES + EXTRA_SHAPES, "shapes")
    colors = _choice(args.colors, COLORS, COLORS + EXTRA_COLORS, "colors")
    check_writable_folder(args.out, "--out")  # a read-only or mistyped --out fails before any scene is drawn
    started = time.monotonic()
    with disk_errors(args.out, "cannot write the dataset to"):
        generate_dataset(args.out, args.count, args.seed, shapes=shapes, colors=colors, size=args.size,
                         workers=args.workers)
    print(f"wrote {args.count} scenes to {args.out} in {time.monotonic() - started:.1f} s")
    return 0

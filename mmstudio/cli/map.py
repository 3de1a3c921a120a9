"""`map`: a collection's embeddings laid out on a plane, as a picture or one JSON line per image."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from mmstudio.cli.infer import Printer, engine_for
from mmstudio.cli.options import load_flags, non_empty, non_empty_path, positive_int
from mmstudio.cli.search import _update_index
from mmstudio.embedding_map import (
    MARKED,
    METHODS,
    QUERY,
    UMAP_INSTALL,
    UMAP_NEIGHBOURS,
    cached_layout,
    caption_has,
    compute_layout,
    draw,
    save_layout,
)
from mmstudio.errors import MMStudioError
from mmstudio.imaging import load_image


def register(commands) -> None:
    p = commands.add_parser(
        "map", help="lay a folder's pictures out on a plane by their embeddings (a PNG, or JSON lines)",
        description="Index the folders (as `search` does, only what changed), then place every picture on the "
                    "plane of the two directions along which their embeddings vary most (PCA; the layout is kept "
                    "with the index). --out draws it; --json prints one line per image. --query places a text "
                    "in the same space; --color-by marks the pictures whose caption holds a word.")
    p.add_argument("paths", nargs="+", metavar="DIR", type=non_empty_path, help="folders or image files")
    p.add_argument("--out", type=Path, metavar="MAP.png", help="draw the map into this picture")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: "image", "x", "y" (and "marked" with --color-by or --query); '
                        'then, with --query, {"query", "x", "y"}')
    p.add_argument("--query", type=non_empty, metavar="TEXT",
                   help="place this text on the map and mark the pictures nearest to it")
    p.add_argument("--near", type=positive_int, default=20, metavar="K",
                   help="with --query: how many nearest pictures to mark (default 20)")
    p.add_argument("--color-by", type=non_empty, metavar="WORD",
                   help="caption every picture (with --caption-model) and mark those whose caption has WORD")
    p.add_argument("--model", type=non_empty,
                   help="matching model: folder, hub id, or builtin:NAME (default: builtin:retrieval)")
    p.add_argument("--caption-model", type=non_empty, help="for --color-by (default: builtin:caption)")
    p.add_argument("--size", default="1200x900", metavar="WxH", help="the picture's size (default 1200x900)")
    p.add_argument("--layout", choices=METHODS, default="pca",
                   help=f"pca (default: the plane of the two main directions, at once) or umap (neighbourhoods "
                        f"kept together; minutes for 100,000 pictures; needs {UMAP_INSTALL})")
    load_flags(p)
    p.set_defaults(run=run_map)

    p = commands.add_parser(
        "layout", help="lay out vectors from a .npy file (what the app's Explore tab runs for UMAP)",
        description="Read an (N, D) array of embeddings, write its 2-D layout as .npz (xy, mean, axes, explained, "
                    "method), atomically. The app runs this in a separate process so that a UMAP layout, minutes "
                    "long, never holds up the models.")
    p.add_argument("vectors", type=non_empty_path, metavar="VECTORS.npy")
    p.add_argument("out", type=Path, metavar="OUT.npz")
    p.add_argument("--method", choices=METHODS, default="umap")
    p.set_defaults(run=run_layout)


def run_layout(args: argparse.Namespace) -> int:
    try:
        vectors = np.load(args.vectors, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MMStudioError(f"cannot read {args.vectors} as an array: {exc}") from None
    if vectors.ndim != 2 or not len(vectors):
        raise MMStudioError(f"{args.vectors}: an (N, D) array of embeddings was expected, not {vectors.shape}")
    layout = compute_layout(vectors, args.method)
    save_layout(layout, args.out)
    if not args.out.is_file():
        raise MMStudioError(f"cannot write {args.out}")
    print(f"{args.method} layout of {len(vectors):,} vectors written to {args.out}", file=sys.stderr)
    return 0


def _size(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not found or not (200 <= int(found[1]) <= 10000 and 200 <= int(found[2]) <= 10000):
        raise MMStudioError(f"--size {text!r}: give WIDTHxHEIGHT, each 200 to 10000 pixels (e.g. 1200x900)")
    return int(found[1]), int(found[2])


def run_map(args: argparse.Namespace) -> int:
    if args.out is None and not args.json:
        raise MMStudioError("say what to make: --out MAP.png, --json, or both")
    size = _size(args.size)
    engine = engine_for(args)
    engine.embedder(args.model)  # a model that cannot embed fails before any image is read
    collection = _update_index(engine, args.model, args.paths)
    if not collection.names:
        raise MMStudioError("no picture could be read to map")
    layout = cached_layout(collection.vectors, collection.keys, collection.cache, args.layout)
    near = np.zeros(len(collection.names), bool)
    has = np.zeros(len(collection.names), bool)
    shown = (f"PCA ({layout.explained:.0%} of the variance)" if layout.method == "pca"
             else f"UMAP ({UMAP_NEIGHBOURS} neighbours, cosine)")
    title = f"{len(collection.names):,} pictures, {shown}"
    notes = []
    query_xy = None
    if args.query:
        text = engine.embedder(args.model).text_features([args.query])[0]
        query_xy = layout.place_text(text, collection.vectors @ text)
        rows, _ = collection.nearest().search(text, args.near)
        near[rows] = True
        notes.append(f"ring: {args.query!r}, pink: its {len(rows)} nearest pictures")
    if args.color_by:
        word = args.color_by.lower()
        has = _caption_has(engine, args.caption_model, collection.names, word)
        notes.append(f"orange: the {int(has.sum()):,} whose caption has {word!r}")
    marked = near | has
    if notes:
        title += "\n" + "; ".join(notes)
    if args.json:
        with_marks = bool(args.query or args.color_by)
        for name, (x, y), mark in zip(collection.names, layout.xy, marked):
            line = {"image": name, "x": round(float(x), 5), "y": round(float(y), 5)}
            if with_marks:
                line["marked"] = bool(mark)
            print(json.dumps(line, ensure_ascii=False))
        if query_xy is not None:
            print(json.dumps({"query": args.query, "x": round(float(query_xy[0]), 5),
                              "y": round(float(query_xy[1]), 5)}, ensure_ascii=False))
    if args.out is not None:
        picture = draw(layout.xy, marks=[(has, MARKED), (near, QUERY)], query=query_xy, size=size, title=title)
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            picture.save(args.out)
        except (OSError, ValueError) as exc:
            raise MMStudioError(f"cannot write {args.out}: {exc}") from None
        print(f"map of {len(collection.names):,} pictures written to {args.out}", file=sys.stderr)
    return 0


def _caption_has(engine, model: str | None, names: tuple[str, ...], word: str) -> np.ndarray:
    """Whether each picture's caption holds `word` (as a whole word), captioning with progress."""
    printer = Printer(False)
    has = np.zeros(len(names), bool)
    holds = caption_has(word)
    items = engine.caption_each(list(names), load=load_image, model=model,
                                progress=lambda done, total: printer.progress(done, total))
    for i, item in enumerate(items):
        has[i] = item.result is not None and holds(item.result.caption)
    printer.finish()
    return has

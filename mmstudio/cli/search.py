"""`search`: find images in a folder by text, through an embedding index kept under the user cache."""

from __future__ import annotations

import argparse
import sys

from mmstudio.cli.options import (
    DEVICE_HELP,
    DTYPE_HELP,
    device,
    non_empty,
    non_empty_path,
    non_negative_int,
    positive_int,
)
from mmstudio.engine import Engine
from mmstudio.errors import MMStudioError
from mmstudio.imaging import iter_image_files
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.words import not_understood
from mmstudio.search import RERANK
from mmstudio.validation import DTYPES


def register(commands) -> None:
    p = commands.add_parser(
        "search", help="find images in a folder by text (indexes the folder first, only what changed)",
        description="Index a folder of images with a matching model (BLIP retrieval, CLIP or SigLIP) under the user "
                    "cache, encoding only images not seen before, then print the images that fit QUERY best.")
    p.add_argument("query", nargs="+", metavar="QUERY", help="the text to look for (several words are joined)")
    p.add_argument("--index", required=True, type=non_empty_path, metavar="DIR", help="the folder of images to search")
    p.add_argument("--model", type=non_empty,
                   help="matching model: folder, hub id, or builtin:NAME (default: builtin:retrieval)")
    p.add_argument("--top", type=positive_int, default=10, metavar="K", help="how many images to print (default 10)")
    p.add_argument("--rerank", type=non_negative_int, default=RERANK, metavar="N",
                   help=f"re-rank the best N by the model's matching head where it has one, as BLIP does "
                        f"(default {RERANK}; 0: embeddings only)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: "image", "score", "rank", "match" (the matching head\'s '
                        'probability, where re-ranked), "unknown_words" (of the query)')
    p.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    p.add_argument("--dtype", default=None, choices=DTYPES, help=DTYPE_HELP)
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow .bin weights (pickle can run code: only for models you trust)")
    p.add_argument("--allow-missing-weights", action="store_true",
                   help="load a model whose folder lacks weights its config asks for (they stay random)")
    p.set_defaults(run=run_search)


def run_search(args: argparse.Namespace) -> int:
    import json

    query = " ".join(args.query).strip()
    if not query:
        raise MMStudioError("give a text to search for")
    if not args.index.is_dir():
        raise MMStudioError(f"{args.index}: not a folder of images")
    engine = Engine(LoadOptions.chosen(args.device, args.dtype, args.allow_pickle, args.allow_missing_weights))
    engine.embedder(args.model)  # a model that cannot search fails before any image is read
    files = iter_image_files([args.index])
    collection = engine.index([(str(path), path) for path in files], model=args.model)
    report = collection.report
    for name, why in report.failed:
        print(f"mmstudio: skipped {why}" if why.startswith(name) else f"mmstudio: skipped {name}: {why}",
              file=sys.stderr)
    print(f"indexed {report.images} images in {args.index} ({report.encoded} encoded, {report.reused} unchanged"
          f"{f', {len(report.failed)} unreadable' if report.failed else ''})", file=sys.stderr)
    unknown = engine.unknown_words(Task.ITM, [query], model=args.model)[0]
    if unknown:  # the images are ranked by the query without them: say so, on stderr with the other notes
        print(f"mmstudio: {not_understood(unknown, engine.known_words(Task.ITM, model=args.model))}",
              file=sys.stderr)
    for hit in engine.search(collection, query, model=args.model, top_k=args.top, depth=args.rerank):
        match = None if hit.match is None else round(hit.match, 6)
        if args.json:
            print(json.dumps({"image": hit.image, "score": round(hit.score, 6), "rank": hit.rank, "match": match,
                              "unknown_words": list(unknown)}, ensure_ascii=False))
        else:
            fits = "" if hit.match is None else f"  {hit.match:6.1%}"
            print(f"{hit.rank:>3}  {hit.score:+.4f}{fits}  {hit.image}")
    return 0

"""`search` and `index`: find images in a folder by text, through an embedding index kept under the user cache;
write images' embeddings to a file."""

from __future__ import annotations

import argparse
import json
import sys

from mmstudio.cli.batch import BatchOutput
from mmstudio.cli.infer import Printer, engine_for, in_domain_json, out_flags
from mmstudio.cli.options import (
    load_flags,
    non_empty,
    non_empty_path,
    non_negative_int,
    positive_int,
)
from mmstudio.engine import Engine
from mmstudio.errors import MMStudioError
from mmstudio.imaging import iter_image_files, load_image
from mmstudio.models.base import Task
from mmstudio.models.in_domain import out_of_world
from mmstudio.models.words import not_understood
from mmstudio.search import RERANK, Collection


def register(commands) -> None:
    p = commands.add_parser(
        "search", help="find images in a folder by text (indexes the folder first, only what changed)",
        description="Index a folder of images with a matching model (BLIP retrieval, CLIP or SigLIP) under the user "
                    "cache, encoding only images not seen before, then print the images that fit QUERY best.")
    p.add_argument("query", nargs="*", metavar="QUERY", help="the text to look for (several words are joined)")
    p.add_argument("--like", type=non_empty_path, metavar="IMAGE",
                   help="instead of a text: find the pictures that look most like IMAGE (by embedding)")
    p.add_argument("--index", required=True, type=non_empty_path, metavar="DIR", help="the folder of images to search")
    p.add_argument("--model", type=non_empty,
                   help="matching model: folder, hub id, or builtin:NAME (default: builtin:retrieval)")
    p.add_argument("--top", type=positive_int, default=10, metavar="K", help="how many images to print (default 10)")
    p.add_argument("--rerank", type=non_negative_int, default=RERANK, metavar="N",
                   help=f"re-rank the best N by the model's matching head where it has one, as BLIP does "
                        f"(default {RERANK}; 0: embeddings only)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per line: "image", "score", "rank", "match" (the matching head\'s '
                        'probability, where re-ranked), "in_domain" (where re-ranked by a model that ships an '
                        'in-domain check, as the built-in ones do: how likely the picture is from its world), '
                        '"unknown_words" (of the query)')
    load_flags(p)
    p.set_defaults(run=run_search)

    p = commands.add_parser(
        "index", help="bring a folder's search index up to date, or write images' embeddings to a file",
        description="Without --out: encode the images of the folders that the search index under the user cache "
                    "lacks (what `search` does first), with progress. With --out FILE.jsonl: one line per image, "
                    '{"image": ..., "embedding": [...]} (unit length, the model\'s joint image-text space), '
                    "written as it goes; --resume goes on after a kill, and under torchrun each process embeds "
                    "its share.")
    p.add_argument("paths", nargs="+", metavar="PATH", type=non_empty, help="image files or folders")
    p.add_argument("--model", type=non_empty,
                   help="matching model: folder, hub id, or builtin:NAME (default: builtin:retrieval)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--progress", choices=("text", "json"), default="text",
                   help='json (without --out): one line per step on stdout, {"event": "progress", "done", "total"}, '
                        'then {"event": "indexed", "images", "encoded", "reused", "unreadable", "notes"}, for '
                        "programs that show it")
    out_flags(p)
    load_flags(p)
    p.set_defaults(run=run_index)


def run_search(args: argparse.Namespace) -> int:
    query = " ".join(args.query).strip()
    if bool(query) == (args.like is not None):
        raise MMStudioError("give a text to search for, or --like IMAGE (not both)")
    if not args.index.is_dir():
        raise MMStudioError(f"{args.index}: not a folder of images")
    engine = engine_for(args)
    engine.embedder(args.model)  # a model that cannot search fails before any image is read
    like = load_image(args.like) if args.like is not None else None  # a bad picture fails before indexing
    collection = _update_index(engine, args.model, [args.index])
    if like is not None:
        for hit in engine.search_like(collection, like, model=args.model, top_k=args.top):
            if args.json:
                print(json.dumps({"image": hit.image, "score": round(hit.score, 6), "rank": hit.rank},
                                 ensure_ascii=False))
            else:
                print(f"{hit.rank:>3}  {hit.score:+.4f}  {hit.image}")
        return 0
    unknown = engine.unknown_words(Task.ITM, [query], model=args.model)[0]
    if unknown:  # the images are ranked by the query without them: say so, on stderr with the other notes
        print(f"mmstudio: {not_understood(unknown, engine.known_words(Task.ITM, model=args.model))}",
              file=sys.stderr)
    for hit in engine.search(collection, query, model=args.model, top_k=args.top, depth=args.rerank):
        match = None if hit.match is None else round(hit.match, 6)
        if args.json:
            print(json.dumps({"image": hit.image, "score": round(hit.score, 6), "rank": hit.rank, "match": match,
                              "in_domain": in_domain_json(hit.in_domain), "unknown_words": list(unknown)},
                             ensure_ascii=False))
        else:
            fits = "" if hit.match is None else f"  {hit.match:6.1%}"
            # A match on a picture from outside the model's world means little: said on the hit's own line.
            flag = f"  (out of the world, in_domain {hit.in_domain:.1g})" if out_of_world(hit.in_domain) else ""
            print(f"{hit.rank:>3}  {hit.score:+.4f}{fits}  {hit.image}{flag}")
    return 0


def _update_index(engine: Engine, model: str | None, paths: list, *, batch_size: int = 32,
                  as_json: bool = False) -> Collection:
    """Bring the index of `paths` up to date, saying how it went on stderr (and, `as_json`, on stdout)."""
    files = iter_image_files(paths)
    printer = Printer(False)

    def progress(done: int, total: int) -> None:
        if as_json:
            print(json.dumps({"event": "progress", "done": done, "total": total}), flush=True)
        else:
            printer.progress(done, total)

    collection = engine.index([(str(path), path) for path in files], model=model, batch_size=batch_size,
                              progress=progress)
    printer.finish()
    report = collection.report
    if as_json:
        print(json.dumps({"event": "indexed", "images": report.images, "encoded": report.encoded,
                          "reused": report.reused, "unreadable": [{"image": n, "error": e} for n, e in report.failed],
                          "notes": list(report.notes)}, ensure_ascii=False), flush=True)
    for note in report.notes:
        print(f"mmstudio: {note}", file=sys.stderr)
    for name, why in report.failed:
        print(f"mmstudio: skipped {why}" if why.startswith(name) else f"mmstudio: skipped {name}: {why}",
              file=sys.stderr)
    where = ", ".join(str(p) for p in paths)
    print(f"indexed {report.images} images in {where} ({report.encoded} encoded, {report.reused} unchanged"
          f"{f', {len(report.failed)} unreadable' if report.failed else ''})", file=sys.stderr)
    return collection


def run_index(args: argparse.Namespace) -> int:
    output = BatchOutput(args.out, resume=args.resume)
    engine = engine_for(args, output.ranks)
    embedder = engine.embedder(args.model)  # a model that cannot embed fails before any image is read
    if args.out is None:
        collection = _update_index(engine, args.model, args.paths, batch_size=args.batch_size,
                                   as_json=args.progress == "json")
        return 1 if collection.report.failed else 0
    inputs = iter_image_files(args.paths)
    files = output.todo(inputs)
    printer = Printer(True, output.file)
    printer.failed = output.failed_before
    if output.done:
        print(f"{args.out}: {len(output.done)} results kept, {len(files)} images to go", file=sys.stderr)
    for start in range(0, len(files), args.batch_size):
        batch = files[start:start + args.batch_size]
        images: dict[int, object] = {}
        errors: dict[int, str] = {}
        for i, path in enumerate(batch):
            try:
                images[i] = load_image(path)
            except MMStudioError as exc:
                errors[i] = str(exc)
        vectors = iter(embedder.image_features(list(images.values())) if images else ())
        for i, path in enumerate(batch):  # in input order, failures in their place
            if i in errors:
                printer.error(str(path), errors[i])
            else:
                printer.record({"image": str(path), "embedding": [round(float(v), 6) for v in next(vectors)]}, "")
        printer.progress(start + len(batch), len(files))
    printer.finish()
    return 1 if output.finish([str(f) for f in inputs], printer.failed) else 0

"""`mmstudio duplicates`: groups of exact and near copies among pictures (files or folders)."""

from __future__ import annotations

import argparse
import json
import sys

from mmstudio.cli.infer import Printer
from mmstudio.cli.options import non_empty, probability
from mmstudio.duplicates import DEFAULT_THRESHOLD, find_duplicates
from mmstudio.imaging import iter_image_files


def register(commands) -> None:
    p = commands.add_parser(
        "duplicates", help="find exact and near copies among pictures (files or folders)",
        description="Exact copies have the same pixels; near copies (resized, re-compressed, lightly cropped, "
                    "re-encoded) look the same at a glance: their blurred 16 x 16 thumbnails, whole and in 90 % "
                    "windows, correlate at the threshold or more. Each group lists the largest picture first. "
                    "Nothing is moved or deleted.")
    p.add_argument("paths", nargs="+", metavar="PATH", type=non_empty, help="image files or folders")
    p.add_argument("--threshold", type=probability, default=DEFAULT_THRESHOLD,
                   help=f"how alike near copies must be, from 0 to 1 (default {DEFAULT_THRESHOLD}; lower finds "
                        "more, and more that are only similar)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per group: "group", "exact", "images" (each "image", "width", '
                        '"height", "similarity" to the first, "exact")')
    p.set_defaults(run=run_duplicates)


def run_duplicates(args: argparse.Namespace) -> int:
    files = iter_image_files(args.paths)
    printer = Printer(False)
    report = find_duplicates([str(f) for f in files], threshold=args.threshold, progress=printer.progress)
    printer.finish()
    for name, why in report.failed:
        print(f"mmstudio: skipped {why}" if why.startswith(name) else f"mmstudio: skipped {name}: {why}",
              file=sys.stderr)
    for number, group in enumerate(report.groups, start=1):
        if args.json:
            print(json.dumps({"group": number, "exact": group.exact,
                              "images": [vars(m) for m in group.members]}, ensure_ascii=False))
            continue
        kind = "exact copies" if group.exact else "near copies"
        print(f"group {number}: {len(group.members)} pictures, {kind}")
        for i, member in enumerate(group.members):
            how = "keep?" if i == 0 else ("same pixels" if member.exact else f"{member.similarity:.3f}")
            print(f"  {how:>11}  {member.width}x{member.height}  {member.image}")
    copies = sum(len(g.members) - 1 for g in report.groups)
    print(f"{report.pictures} pictures, {len(report.groups)} groups, {copies} copies"
          f"{f', {len(report.failed)} unreadable' if report.failed else ''}", file=sys.stderr)
    return 1 if report.failed else 0

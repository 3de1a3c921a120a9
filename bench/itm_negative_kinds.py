"""Image-text matching against hard negatives, split by the kind of change.

    python bench/itm_negative_kinds.py [--model builtin:retrieval] --data DIR [--limit N]

For each scene of a Shapes World folder, the retrieval model scores the caption
and each written hard negative; a pair counts as right when the caption scores
higher. Kinds: one object's shape, color or size changed, or two phrases
swapped (word order). Also split by the number of objects in the scene, which is
where the errors gather. The recipe reports the pooled figure
(`itm_pairwise_accuracy`); this says which kind of negative holds it back.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from mmstudio.engine import Engine
from mmstudio.imaging import load_image
from mmstudio.models.base import Task
from mmstudio.training.evaluate import scene_rows

WORD_KIND = {1: "size", 2: "color", 3: "shape"}  # position in "a {size} {color} {shape}"


def kind(caption: str, negative: str) -> str:
    truth, other = caption.split(" and "), negative.split(" and ")
    if sorted(truth) == sorted(other):
        return "order"
    for a, b in zip(truth, other):
        if a != b:
            return next(WORD_KIND[i] for i, (x, y) in enumerate(zip(a.split(), b.split())) if x != y)
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:retrieval")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    adapter = Engine().adapter(Task.ITM, args.model)
    right, total = collections.Counter(), collections.Counter()
    for row in scene_rows(args.data, Task.ITM, args.limit):
        results = adapter.match(load_image(row["_path"]), [row["caption"], *(row.get("negatives") or [])])
        objects = row["caption"].count(" and ") + 1
        for result in results[1:]:
            for key in (kind(row["caption"], result.text), (kind(row["caption"], result.text), objects)):
                total[key] += 1
                right[key] += results[0].itm > result.itm
    kinds = sorted(k for k in total if isinstance(k, str))
    print(f"{'negative kind':<14}{'pairs':>7}{'right':>9}   by objects in the scene (1 2 3 4)")
    for k in kinds:
        split = "  ".join(f"{100 * right[(k, n)] / total[(k, n)]:5.1f}" if total[(k, n)] else "    -"
                          for n in range(1, 5))
        print(f"{k:<14}{total[k]:>7}{100 * right[k] / total[k]:>8.1f}%   {split}")
    pooled = sum(right[k] for k in kinds) / sum(total[k] for k in kinds)
    print(f"summary: the caption scores above its hard negative in {pooled:.1%} of {sum(total[k] for k in kinds)} "
          f"pairs; weakest kind {min(kinds, key=lambda k: right[k] / total[k])}")


if __name__ == "__main__":
    main()

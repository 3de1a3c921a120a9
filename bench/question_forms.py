"""How a built-in VQA model answers questions in its words but not of the forms it learned, beside the forms it did.

    python bench/question_forms.py [--model builtin:vqa] [--scenes N] [--seed S]

On N fresh Shapes World scenes (a validation seed by default) asks, of the scene's first shape
in alphabetical order, "is there a {shape}?" (no colour: not a form the world's questions have) and
"how many {shapes}?" (without "are there"), "is there a {shape}?" of a shape the scene lacks, and
beside them the learned forms "how many {shapes} are there?" and "is there a {color} {shape}?". Prints
each kind's share of right answers and how many the model marked familiar (`familiar_question`
in `ask --json`; the app's caution under the answer). Defaults: 400 scenes, seed 2000.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmstudio.engine import Engine  # noqa: E402
from mmstudio.imaging import load_image  # noqa: E402
from mmstudio.world import generate_dataset, read_metadata  # noqa: E402
from mmstudio.world.vocab import NUMBER_WORDS, SHAPES, plural  # noqa: E402


def questions(objects: list[dict]) -> list[tuple[str, str, str]]:
    """(kind, question, right answer) about one scene."""
    shapes = Counter(o["shape"] for o in objects)
    shape = sorted(shapes)[0]
    count = NUMBER_WORDS[shapes[shape]]
    first = objects[0]
    out = [("is there a {shape}? (present)", f"is there a {shape}?", "yes"),
           ("how many {shapes}?", f"how many {plural(shape)}?", count),
           ("learned: how many {shapes} are there?", f"how many {plural(shape)} are there?", count),
           ("learned: is there a {color} {shape}? (present)", f"is there a {first['color']} {first['shape']}?", "yes")]
    absent = [s for s in SHAPES if s not in shapes]
    if absent:
        out.insert(1, ("is there a {shape}? (absent)", f"is there a {absent[0]}?", "no"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="builtin:vqa")
    p.add_argument("--scenes", type=int, default=400)
    p.add_argument("--seed", type=int, default=2000)
    args = p.parse_args()
    engine = Engine()
    right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    familiar: dict[str, Counter] = defaultdict(Counter)
    with tempfile.TemporaryDirectory(prefix="mmstudio-forms-") as tmp:
        folder = generate_dataset(Path(tmp), args.scenes, args.seed, workers=2)
        for row in read_metadata(folder):
            asked = questions(row["objects"])
            results = engine.ask(load_image(folder / row["file_name"]), [q for _, q, _ in asked], model=args.model,
                                 attention=False)
            for (kind, _, want), result in zip(asked, results):
                right[kind][0] += result.answer == want
                right[kind][1] += 1
                familiar[kind][result.familiar] += 1
    print(f"{args.model}, {args.scenes} scenes of seed {args.seed}")
    print(f"{'kind':<50}{'right':>8}{'asked':>7}  marked familiar")
    for kind, (good, asked) in right.items():
        marks = ", ".join(f"{mark}: {n}" for mark, n in familiar[kind].items())
        print(f"{kind:<50}{good / asked:>8.1%}{asked:>7}  {marks}")


if __name__ == "__main__":
    main()

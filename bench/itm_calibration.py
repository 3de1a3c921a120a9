"""Where a retrieval model's yes/no cut lands when its ITM head is calibrated on 300 selection scenes and on 1,000.

    python bench/itm_calibration.py [--model resources/models/retrieval] [--measure DIR ...]

Scores the recipe's selection scenes (seed 1000, generated into a temporary folder) with the model's ITM
head over the texts calibration and measurement use (captions, hard negatives, partial descriptions and
their near misses), finds the best cut on the first 300 scenes (the recipe's selection set before
2026-12-04) and on all 1,000 (since), and prints yes/no accuracy at the published 0.5 and at each cut, on
the selection scenes and on each --measure set (say 1,000 validation scenes, seed 2000, and 1,000 of
`python bench/heldout_world.py --seed 77`). Cuts are logit margins relative to the model as published:
0 is its own cut.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmstudio.engine import Engine  # noqa: E402
from mmstudio.models.base import Task  # noqa: E402
from mmstudio.training.calibration import _margins, best_threshold  # noqa: E402
from mmstudio.training.recipe import SELECT_SEED  # noqa: E402
from mmstudio.world import generate_dataset  # noqa: E402


def accuracy(margins: tuple[np.ndarray, np.ndarray], cut: float) -> float:
    positives, negatives = margins
    return float(((positives > cut).sum() + (negatives < cut).sum()) / (len(positives) + len(negatives)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "resources" / "models" / "retrieval"))
    parser.add_argument("--measure", nargs="*", default=[], help="dataset folders to measure at each cut")
    args = parser.parse_args()
    adapter = Engine().adapter(Task.ITM, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        select = generate_dataset(Path(tmp) / "select", 1000, SELECT_SEED, workers=2)
        cuts = {"published (0)": 0.0}
        sets = {}
        for scenes in (300, 1000):
            margins = _margins(adapter, select, limit=scenes)
            cuts[f"best on {scenes} selection scenes"] = best_threshold(*margins)[0]
        sets["selection (1,000)"] = margins
    for folder in args.measure:
        sets[folder] = _margins(adapter, Path(folder))
    print(f"model {args.model}; yes/no at 0.5 over captions, hard negatives, partials and near misses")
    for name, cut in cuts.items():
        row = "  ".join(f"{label}: {100 * accuracy(m, cut):.2f} %" for label, m in sets.items())
        print(f"cut {cut:+.3f} ({name}): {row}")


if __name__ == "__main__":
    main()

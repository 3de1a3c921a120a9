"""The training batches' own cost: building them on the CPU, between the model's steps, as the recipe does.

    python bench/collate_speed.py [--scenes N] [--rounds R]

Times each task's collator (the recipe's batch settings, on N generated Shapes World
scenes) as it is and as it was, the two in turn in one process, R rounds of 20
batches: the retrieval batch's truth table (which texts are true of which images,
12,000 questions a batch) with each scene's objects ordered once, against `describes`
asked pair by pair (the same answers: tests/test_world_descriptions.py). The caption and
VQA collators did not change: their rows show the noise. Also the pixel array a stage
builds once (reading and resizing every image): on threads against one by one. Prints
milliseconds (medians) and the ratios. Defaults: 512 scenes, 5 rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmstudio.imaging import load_image  # noqa: E402
from mmstudio.models.base import Task  # noqa: E402
from mmstudio.models.blip import load_image_processor  # noqa: E402
from mmstudio.resources import builtin_models_dir  # noqa: E402
from mmstudio.training.data import PixelStore, read_dataset  # noqa: E402
from mmstudio.training.objectives import Collator  # noqa: E402
from mmstudio.world import describes, generate_dataset  # noqa: E402

BATCHES = 20
ITM = dict(order_share=0.25, partial_share=1.0, partial_true_of=True)  # the recipe's retrieval stage


class PairByPair(Collator):
    """The truth table as it was worked out: `describes` for every image and text."""

    def _true_of(self, examples, texts):
        return torch.tensor([[describes(self.dataset.objects[e.image], text) for text in texts] for e in examples])


def _collate_ms(collator: Collator, batch: int) -> float:
    items = collator.items()
    start = time.perf_counter()
    for i in range(BATCHES):
        at = (i * batch) % max(1, len(items) - batch)
        collator(items[at:at + batch])
    return (time.perf_counter() - start) / BATCHES * 1000


def _serial_build(dataset, size: int, resample) -> None:
    pixels = np.zeros((len(dataset.images), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(dataset.images):
        pixels[i] = np.asarray(load_image(path).resize((size, size), resample=resample))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=512)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    from transformers import AutoTokenizer

    from mmstudio.models.blip import processor_geometry

    model = builtin_models_dir() / "caption"
    image_processor = load_image_processor(model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    size, resample, _, _ = processor_geometry(image_processor)
    with tempfile.TemporaryDirectory(prefix="mmstudio-collate-") as tmp:
        data = generate_dataset(Path(tmp) / "scenes", args.scenes, seed=1, workers=2)
        print(f"{args.scenes} scenes, {torch.get_num_threads()} torch threads, {BATCHES} batches a round, "
              f"{args.rounds} rounds; milliseconds a batch (medians)")
        rows = []
        for task, batch, grid in ((Task.CAPTION, 64, 128 // 16), (Task.VQA, 32, 0), (Task.ITM, 64, 0)):
            dataset = read_dataset(data, task)
            now = Collator(task, dataset, PixelStore(dataset, image_processor), tokenizer, seed=1,
                           grid_side=grid, **(ITM if task is Task.ITM else {}))
            kind = PairByPair if task is Task.ITM else Collator
            before = kind(task, dataset, now.pixels, tokenizer, seed=1, grid_side=grid,
                          **(ITM if task is Task.ITM else {}))
            times = {"before": [], "now": []}
            for _ in range(args.rounds):
                times["before"].append(_collate_ms(before, batch))
                times["now"].append(_collate_ms(now, batch))
            rows.append((task.value, *(statistics.median(times[k]) for k in ("before", "now"))))
        builds = {"one by one": [], "threads": []}
        dataset = read_dataset(data, Task.CAPTION)
        for _ in range(max(1, args.rounds // 2)):
            start = time.perf_counter()
            _serial_build(dataset, size, resample)
            builds["one by one"].append(time.perf_counter() - start)
            start = time.perf_counter()
            PixelStore(dataset, image_processor)
            builds["threads"].append(time.perf_counter() - start)
    print(f"{'batch':<10}{'before':>10}{'now':>10}{'before / now':>15}")
    for name, old, new in rows:
        print(f"{name:<10}{old:>10.1f}{new:>10.1f}{old / new:>15.2f}")
    old, new = (statistics.median(builds[k]) * 1000 / args.scenes for k in ("one by one", "threads"))
    print(f"pixel array, ms an image: one by one {old:.2f}, threads {new:.2f}, ratio {old / new:.2f}")


if __name__ == "__main__":
    main()

"""Where a caption model's new-concept misses are: each circle's and hexagon's shape word, by size.

    python bench/new_concept_errors.py --model runs/new-concepts/full --data runs/new-concepts/new-eval \\
        runs/new-concepts/old-eval [--probe runs/new-concepts/new-train]

Objects are matched to the caption's "a SIZE COLOR SHAPE" phrases by position (captions name objects left
to right), in scenes whose caption has as many phrases as the scene has objects. --probe also fits a
linear probe on the image encoder's patch features under each circle and hexagon of a training set, to
tell whether the encoder's features separate the two shapes at all (70 % of its scenes fit, 30 % test).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

CONFUSED = ("circle", "hexagon")  # the pair the fine-tuned model mixes up


def word_accuracy(model: str, folders: list[Path], limit: int) -> None:
    from mmstudio.engine import Engine
    from mmstudio.imaging import load_image
    from mmstudio.models.base import Task
    from mmstudio.training.evaluate import scene_rows

    adapter = Engine().adapter(Task.CAPTION, model)
    total, right, scenes, scenes_right = (collections.Counter() for _ in range(4))
    for folder in folders:
        rows = scene_rows(folder, Task.CAPTION, limit)
        for i in range(0, len(rows), 50):
            chunk = rows[i:i + 50]
            for row, result in zip(chunk, adapter.caption([load_image(r["_path"]) for r in chunk])):
                count = len(row["objects"])
                scenes[count] += 1
                scenes_right[count] += result.caption == row["caption"]
                phrases = result.caption.split(" and ")
                if len(phrases) != count:
                    continue
                for obj, phrase in zip(row["objects"], phrases):
                    if obj["shape"] in CONFUSED:
                        key = f"{obj['size']} {obj['shape']}"
                        total[key] += 1
                        right[key] += phrase.split()[-1] == obj["shape"]
    for key in sorted(total):
        print(f"{key:<16}{total[key]:>6} objects {right[key] / total[key]:>8.1%} right shape word")
    for count in sorted(scenes):
        share = scenes_right[count] / scenes[count]
        print(f"{count} object(s)    {scenes[count]:>6} scenes  {share:>8.1%} exact match")


def probe(model: str, folder: Path, limit: int) -> None:
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    blip = BlipForConditionalGeneration.from_pretrained(model).eval()
    processor = BlipProcessor.from_pretrained(model)
    side, patch = blip.config.vision_config.image_size, blip.config.vision_config.patch_size
    grid = side // patch
    lines = (folder / "metadata.jsonl").read_text().splitlines()[:limit]
    rows = [r for r in map(json.loads, lines) if any(o["shape"] in CONFUSED for o in r["objects"])]
    features, labels, sizes = [], [], []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            chunk = rows[i:i + 64]
            images = [Image.open(folder / r["file_name"]).convert("RGB") for r in chunk]
            hidden = blip.vision_model(**processor.image_processor(images, return_tensors="pt")).last_hidden_state
            for b, row in enumerate(chunk):
                for obj in (o for o in row["objects"] if o["shape"] in CONFUSED):
                    x0, y0, x1, y1 = (v / row["width"] * side for v in obj["bbox"])
                    tokens = [1 + r * grid + c for r in range(max(0, int(y0 // patch)), min(grid, int(y1 // patch) + 1))
                              for c in range(max(0, int(x0 // patch)), min(grid, int(x1 // patch) + 1))]
                    under = hidden[b, tokens]
                    features.append(torch.cat([under.mean(0), under.max(0).values]))
                    labels.append(obj["shape"] == "hexagon")
                    sizes.append(obj["size"])
    x, y = torch.stack(features), torch.tensor(labels).float()
    cut = int(len(y) * 0.7)
    x = (x - x[:cut].mean(0)) / (x[:cut].std(0) + 1e-5)
    w = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, bias], max_iter=300)

    def closure():
        optimizer.zero_grad()
        fit = torch.nn.functional.binary_cross_entropy_with_logits(x[:cut] @ w + bias, y[:cut])
        loss = fit + 1e-3 * w.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    right = ((x @ w + bias > 0).float() == y).tolist()
    for part, span in (("fit", range(cut)), ("test", range(cut, len(y)))):
        for size in ("small", "large"):
            picked = [right[i] for i in span if sizes[i] == size]
            share = sum(picked) / len(picked)
            print(f"probe {part:<5}{size:<7}{len(picked):>6} objects {share:>8.1%} circle/hexagon right")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="scene folders to caption")
    parser.add_argument("--limit", type=int, default=1000, help="scenes per folder")
    parser.add_argument("--probe", type=Path, help="a training folder for the linear probe (its first 4,000 scenes)")
    args = parser.parse_args()
    word_accuracy(args.model, args.data, args.limit)
    if args.probe:
        probe(args.model, args.probe, 4000)


if __name__ == "__main__":
    main()

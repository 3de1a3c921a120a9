"""Teaching the built-in caption model concepts it never saw: hexagons and the color pink.

    python bench/teach_new_concepts.py --work runs/new-concepts [--minutes 10] [--quick]

Fine-tunes the built-in caption model for at most --minutes on scenes that use
hexagon and pink among the usual shapes and colors (mixed with ordinary scenes,
so the old concepts stay in practice), once with all weights and once with LoRA,
and prints exact-match accuracy before and after, on new-concept scenes and on
the original world. Kept out of the default tests: it takes about half an hour.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mmstudio.models.base import Task
from mmstudio.world import COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES, generate_dataset


def exact_match(model: str, data: Path, limit: int) -> float:
    from mmstudio.engine import Engine
    from mmstudio.training.evaluate import evaluate_adapter

    adapter = Engine().adapter(Task.CAPTION, model)
    return evaluate_adapter(adapter, data, limit=limit, attention=False).metrics["exact_match"]


def merged_dataset(out: Path, parts: list[Path]) -> Path:
    """One imagefolder from several (file names prefixed by their part)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    lines = []
    for k, part in enumerate(parts):
        for line in (part / "metadata.jsonl").read_text().splitlines():
            row = json.loads(line)
            name = f"images/p{k}-{Path(row['file_name']).name}"
            shutil.copy2(part / row["file_name"], out / name)
            row["file_name"] = name
            lines.append(json.dumps(row))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("runs/new-concepts"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (about a minute)")
    args = parser.parse_args()
    quick = args.quick
    work = args.work
    shapes, colors = SHAPES + EXTRA_SHAPES, COLORS + EXTRA_COLORS
    n_new, n_old, n_eval = (64, 32, 32) if quick else (6000, 3000, 500)
    new_train = generate_dataset(work / "new-train", n_new, seed=501, shapes=shapes, colors=colors, workers=2)
    old_train = generate_dataset(work / "old-train", n_old, seed=502, workers=2)
    train_data = merged_dataset(work / "train", [new_train, old_train])
    new_eval = generate_dataset(work / "new-eval", n_eval, seed=503, shapes=shapes, colors=colors)
    old_eval = generate_dataset(work / "old-eval", n_eval, seed=2000)
    minutes = 0.5 if quick else args.minutes

    from mmstudio.training.run import TrainConfig, train

    rows = [("built-in (before)", "builtin:caption")]
    for label, lora in (("full fine-tune", False), ("LoRA r=16", True)):
        out = work / ("lora" if lora else "full")
        shutil.rmtree(out, ignore_errors=True)
        config = TrainConfig(task=Task.CAPTION, data=train_data, out=out, steps=100000 if not quick else 4,
                             batch_size=32, learning_rate=3e-4 if lora else 1e-4, max_minutes=minutes, lora=lora,
                             lora_rank=16, save_every=1000, log_every=100)
        train(config, lambda event: print(json.dumps(event)) if event["event"] in ("start", "done") else None)
        rows.append((f"{label} ({minutes:g} min)", str(out)))
    print(f"\n{'model':<28}{'new concepts':>14}{'original world':>16}")
    for label, model in rows:
        print(f"{label:<28}{exact_match(model, new_eval, n_eval):>14.1%}{exact_match(model, old_eval, n_eval):>16.1%}")


if __name__ == "__main__":
    main()

"""One training step of the recipe's retrieval stage: the plain text passes against the cheaper ones (each
image's cross-attention keys projected once, texts in groups of similar length: cross_passes.py), and the
cheaper ones with the vision tower kept as loaded (`--vision-trainable-layers 0`: no vision backward, no
grounding head).

    python bench/train_step.py [--scenes N] [--steps S] [--rounds R]

Builds the stage's start model as the recipe does (from the built-in caption
model), with the recipe's batch settings, on N generated Shapes World scenes,
and times S steps (forward, backward, gradient clipping, AdamW; bfloat16
autocast where the CPU runs it fast, as training does) after one warm-up step,
each kind of pass in a process of its own, the kinds in turn, R rounds.
(In one process, the plain pass timed between the other kind's steps came out
40 % slower than alone: the allocator's state, not the pass.) Prints seconds a
step (median of each kind's rounds) and the ratios. Defaults: 1,024 scenes, 10
steps, 3 rounds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("plain", "cheaper", "kept-vision")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)  # one child's share
    args = p.parse_args()
    if args.kind is None:
        rounds: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(args.rounds):
            for kind in rounds:
                child = [sys.executable, __file__, "--scenes", str(args.scenes), "--steps", str(args.steps),
                         "--kind", kind]
                rounds[kind].append(float(subprocess.run(child, check=True, capture_output=True, text=True
                                                         ).stdout.split()[-1]))
        plain, cheaper, kept = (statistics.median(rounds[kind]) for kind in KINDS)
        print(f"retrieval step, batch 64: plain passes {plain:.3f} s, cheaper passes {cheaper:.3f} s, "
              f"ratio {plain / cheaper:.2f}; vision tower kept {kept:.3f} s, {kept / cheaper:.2f} of the cheaper "
              f"passes' step (each round: {rounds})")
        return

    import torch

    from mmstudio.models.base import Task
    from mmstudio.training.config import TrainConfig
    from mmstudio.training.data import PixelStore
    from mmstudio.training.objectives import Collator, ItmObjective
    from mmstudio.training.recipe import Recipe
    from mmstudio.training.run import _bf16_ok, build_start_model, keep_vision_layers, prepare
    from mmstudio.world import generate_dataset

    recipe = Recipe()
    bf16 = _bf16_ok(torch)
    batch = recipe.batch_size
    with tempfile.TemporaryDirectory(prefix="train-step-") as tmp:
        data = Path(tmp) / "scenes"
        generate_dataset(data, args.scenes, seed=5)
        config = TrainConfig(task=Task.ITM, data=data, out=Path(tmp) / "out",
                             base=str(ROOT / "resources" / "models" / "caption"), batch_size=batch, seed=1,
                             grounding=True, order_share=recipe.itm_order_share,
                             partial_share=recipe.itm_partial_share, partial_itc_weight=recipe.itm_partial_itc_weight)
        job = prepare(config)
        model, processor, _ = build_start_model(job)
        kept = args.kind == "kept-vision"
        if kept:
            keep_vision_layers(model, 0)
        vision = model.config.vision_config
        collator = Collator(Task.ITM, job.dataset, PixelStore(job.dataset, processor.image_processor),
                            processor.tokenizer, order_share=config.order_share, partial_share=config.partial_share,
                            seed=1, grid_side=0 if kept else vision.image_size // vision.patch_size)
        items = collator.items()
        batches = [collator(items[i * batch:(i + 1) * batch]) for i in range(args.steps + 1)]
    objective = ItmObjective(model.train(), grounding=not kept, partial_itc_weight=config.partial_itc_weight,
                             cheap_passes=args.kind != "plain")
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-5)

    def step(inputs: dict) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = objective(**inputs)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started

    step(batches[0])  # warm-up
    print(round(statistics.median(step(inputs) for inputs in batches[1:]), 4))


if __name__ == "__main__":
    main()

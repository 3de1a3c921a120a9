"""Caption latency of a model on this machine: one image, and a batch of 64.

    python bench/caption_latency.py [--model builtin:caption] [--repeats 5]

Prints the median of several runs (the machine is noisy) and the ratio of the
per-image time alone to the per-image time in a batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats

    import torch

    from mmstudio.engine import Engine
    from mmstudio.world import render_scene, sample_scene

    rng = np.random.default_rng(0)
    images = [render_scene(sample_scene(rng)) for _ in range(64)]
    engine = Engine()
    adapter = engine.adapter("caption", args.model)
    engine.caption(images[:2], model=args.model)  # warm-up

    def timed(batch) -> float:
        adapter.cache.clear()  # each image is new to the model, as in real use
        start = time.perf_counter()
        engine.caption(batch, model=args.model, batch_size=64)
        return time.perf_counter() - start

    single = statistics.median(timed([images[i % 64]]) for i in range(repeats * 4))
    batch = statistics.median(timed(images) for _ in range(repeats))
    print(f"model {adapter.info.name} ({adapter.info.parameters / 1e6:.2f}M parameters), device "
          f"{adapter.info.device}, torch threads {torch.get_num_threads()}")
    print(f"{'case':<24}{'seconds':>10}{'ms/image':>12}")
    print(f"{'single image':<24}{single:>10.3f}{single * 1000:>12.1f}")
    print(f"{'batch of 64':<24}{batch:>10.3f}{batch / 64 * 1000:>12.1f}")
    print(f"summary: batch-of-64 per-image time is {single / (batch / 64):.1f}x faster than one image alone")


if __name__ == "__main__":
    main()

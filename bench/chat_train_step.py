"""One training step of the built-in chat model, with each attention kernel: CPU's fused one (sdpa) against
plain matmul attention (eager), which the chat stage trains with.

    python bench/chat_train_step.py [--scenes N] [--steps S] [--batch-size B] [--turns T]

Builds the chat model as the recipe's chat stage does (`build_chat_model` from
the built-in caption model), on conversations about N generated Shapes World
scenes (`chat_batch`: the stage's own batches), and times S
steps of each kernel (forward, backward, gradient clipping, AdamW) with the
stage's precision (bfloat16 autocast where the CPU has AMX or AVX512-BF16),
alternately, after one warm-up step each. Prints seconds a step (median) and
the ratio. Defaults: 256 scenes, 6 steps of 64 conversations of 4 turns.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=256)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--turns", type=int, default=4)
    args = p.parse_args()

    import torch

    from mmstudio.training.chat_model import ChatTraining, Encoder, build_chat_model, chat_batch, scene_texts
    from mmstudio.training.data import PixelStore
    from mmstudio.training.run import cpu_bf16_ok
    from mmstudio.world import generate_dataset

    caption = ROOT / "resources" / "models" / "caption"
    bf16 = cpu_bf16_ok()  # the model stays on the CPU here, as the stage's distillation does
    with tempfile.TemporaryDirectory(prefix="chat-step-") as tmp:
        generate_dataset(Path(tmp), args.scenes, seed=5)
        models = {}
        for kernel in ("sdpa", "eager"):
            model, processor = build_chat_model(caption)
            model.set_attn_implementation(kernel)
            model.train()
            models[kernel] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
        dataset, captions, pools = scene_texts(Path(tmp))
        pixels = PixelStore(dataset, processor.image_processor)
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    encoder = Encoder(processor.tokenizer, side * side)
    training = ChatTraining(batch_size=args.batch_size, turns=args.turns)
    batches = [chat_batch(range(step * args.batch_size, (step + 1) * args.batch_size), captions, pools, pixels,
                          encoder, training) for step in range(args.steps + 1)]

    def step(kernel: str, batch: dict) -> float:
        model, optimizer = models[kernel]
        began = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - began

    times: dict[str, list[float]] = {"sdpa": [], "eager": []}
    for i, batch in enumerate(batches):
        order = ("sdpa", "eager") if i % 2 == 0 else ("eager", "sdpa")
        for kernel in order:
            took = step(kernel, batch)
            if i > 0:  # the first step of each warms its kernels up
                times[kernel].append(took)
    width = batches[0]["input_ids"].shape[1]
    print(f"chat model training step, {args.batch_size} conversations of {args.turns} turns (~{width} tokens), "
          f"{'bfloat16 autocast' if bf16 else 'float32'}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps")
    fused, plain = statistics.median(times["sdpa"]), statistics.median(times["eager"])
    print(f"  sdpa (fused kernel)       {fused:.3f} s/step")
    print(f"  eager (matmul attention)  {plain:.3f} s/step")
    print(f"  eager is {fused / plain:.2f}x the speed of sdpa")


if __name__ == "__main__":
    main()

"""Caption throughput: mmstudio's batched Engine.caption against plain transformers, image by image.

    python bench/caption_throughput.py [--quick] [--device cpu|cuda] [--dtype fp32|fp16|bf16]
                                       [--threads 1] [--repeats R] [--images N] [--batch-size B]
                                       [--models builtin,base]

Two models: the built-in caption model (builtin:caption) and a base-size BLIP
caption checkpoint with random weights (bench/base_size.py builds it once).
mmstudio's side is `Engine().caption(images, batch_size=B)` with the adapter's
vision cache cleared before every run, so every image is new to it. The plain
side is what the transformers documentation shows, once per image:
`processor(images=image, return_tensors="pt")`, `model.generate(**inputs,
max_new_tokens=20)`, `processor.decode(out[0], skip_special_tokens=True)`.
Both decode greedily to at most 20 new tokens (random weights seldom stop early,
so at base size both generate exactly 20); "same output" says whether the two
sides' captions are identical. Shapes World scenes are the images.

Prints images/second of each side (median of interleaved runs) and the ratio,
and on a CPU also the ratio of the process CPU time the two sides used (what
the work cost, whatever another job on the machine did to the wall clock);
the issue's goals are >= 3x on the built-in model and >= 1.3x at base size.
Defaults: 32 images in batches of 16 (the engine's default) x 5 runs for the
built-in model, 8 images in one batch x 3 runs at base size; --quick: 8 and 2
images, 2 and 1 runs.
"""

from __future__ import annotations

import side_by_side as sbs

MAX_NEW_TOKENS = 20
GOALS = {"builtin": 3.0, "base": 1.3}


def scenes(count: int, seed: int = 0):
    import numpy as np

    from mmstudio.world import render_scene, sample_scene

    rng = np.random.default_rng(seed)
    return [render_scene(sample_scene(rng)) for _ in range(count)]


def measure(label: str, name: str, args, images, batch_size: int, repeats: int) -> dict:
    from mmstudio.models.base import GenerationOptions, Task

    engine = sbs.engine(args)
    adapter = engine.adapter(Task.CAPTION, name)
    processor, model = sbs.plain("BlipForConditionalGeneration", adapter.info.path, args)
    generation = GenerationOptions(max_new_tokens=MAX_NEW_TOKENS)

    def ours(batch=images):
        results = engine.caption(batch, model=name, batch_size=batch_size, generation=generation)
        return [r.caption for r in results]

    def plain(batch=images):
        captions = []
        for image in batch:
            inputs = sbs.to_device(processor(images=image, return_tensors="pt"), args)
            out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
            captions.append(processor.decode(out[0], skip_special_tokens=True))
        return captions

    ours(images[:1]), plain(images[:1])  # warm-up: first-call allocations, lazy inits
    timing, results = sbs.interleaved({"plain": plain, "mmstudio": ours}, repeats, args.device,
                                      before=lambda side: sbs.forget(adapter))
    sbs.forget(adapter)
    lengths = sorted({len(processor.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in results["plain"]})
    return dict(label=label, name=name, params=adapter.info.parameters, images=len(images), batch=batch_size,
                plain=len(images) / timing["plain"].wall, ours=len(images) / timing["mmstudio"].wall,
                cpu_ratio=timing["plain"].cpu / timing["mmstudio"].cpu,
                same=results["plain"] == results["mmstudio"], lengths=lengths, example=results["mmstudio"][0])


def main() -> None:
    parser = sbs.parser(__doc__)
    parser.add_argument("--images", type=int, default=None, help="images per run (default 32 built-in, 8 base)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="Engine.caption batch size (default: all images of a run in one batch, at most 16)")
    parser.add_argument("--models", default="builtin,base", help="which of builtin,base to run (default both)")
    args = parser.parse_args()
    sbs.setup(args)

    from base_size import checkpoint

    wanted = args.models.split(",")
    cases = []
    if "builtin" in wanted:
        cases.append(("builtin", "builtin:caption", args.images or (8 if args.quick else 32),
                      args.repeats or (2 if args.quick else 5)))
    if "base" in wanted:
        cases.append(("base", str(checkpoint("caption")), args.images or (2 if args.quick else 8),
                      args.repeats or (1 if args.quick else 3)))
    sbs.header(args, "caption throughput")
    rows = []
    for label, name, count, repeats in cases:
        images = scenes(count)
        batch = args.batch_size or min(16, count)
        rows.append(measure(label, name, args, images, batch, repeats) | {"repeats": repeats})

    on_cpu = args.device == "cpu"
    columns = ["model", "params", "images", "batch", "runs", "plain img/s", "mmstudio img/s", "ratio"]
    columns += ["ratio (CPU time)"] if on_cpu else []
    columns += ["goal", "same output", "caption tokens"]
    lines = []
    for r in rows:
        line = [f"{r['label']} ({r['name'] if r['label'] == 'builtin' else 'random weights'})",
                f"{r['params'] / 1e6:.1f}M", str(r["images"]), str(r["batch"]), str(r["repeats"]),
                f"{r['plain']:.2f}", f"{r['ours']:.2f}", f"{r['ours'] / r['plain']:.2f}x"]
        line += [f"{r['cpu_ratio']:.2f}x"] if on_cpu else []
        line += [f">= {GOALS[r['label']]}x", sbs.yes_no(r["same"]),
                 f"{r['lengths'][0]}-{r['lengths'][-1]}" if r["lengths"] else "0"]
        lines.append(line)
    sbs.table(columns, lines)
    for r in rows:
        print(f"  {r['label']} example caption: {r['example']!r}")
    parts = [f"{r['ours'] / r['plain']:.2f}x on {r['label']} (goal {GOALS[r['label']]}x, "
             f"{'met' if r['ours'] / r['plain'] >= GOALS[r['label']] else 'NOT met'})" for r in rows]
    print("summary: mmstudio batched captions vs plain transformers image by image: " + "; ".join(parts))


if __name__ == "__main__":
    main()

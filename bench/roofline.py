"""Roofline: the machine's matmul peak in each precision, and the share of it mmstudio's models reach.

    python bench/roofline.py [--quick] [--threads N] [--dtypes fp32,bf16,int8] [--models builtin,base]
                             [--batch-size B] [--repeats R]

Peak: the best GFLOP/s of a matrix product over shapes a ViT runs (its MLP and
attention projections over a batch of patch tokens) and one large square
product, timed in each precision: fp32 and bf16 through torch.matmul, int8
through the kernel `--dtype int8` runs (torch's dynamically quantized Linear:
activations quantized per call, int8 weights, fp32 out).

Models: the vision encoder (one batch of B pictures) and the text decoder
(greedy captions of 20 new tokens for the same batch, the vision pass taken
out) of the built-in caption model and of a base-size BLIP caption checkpoint
(ViT-B/16 at 384 px, BERT-base decoder; random weights, bench/base_size.py),
loaded through mmstudio in each precision. FLOPs are counted once in fp32 with
torch's FlopCounterMode (every matmul, attention included): the same model does
the same arithmetic in any precision. GFLOP/s = FLOPs / median wall time;
share = GFLOP/s / that precision's peak. Decoding one token at a time is
memory-bound (a 768-wide row against each weight matrix), so its share is low
by nature; the vision encoder is where a CPU's peak can be approached.

Threads default to torch's own (the machine's cores): a peak is measured with
all of them. The issue's goal: the vision encoder at base size reaches >= 50 %
of the peak of the precision it runs in.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import side_by_side as sbs  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")
GOAL = 0.5
# (rows, inner, out): a ViT-B/16@384 MLP up and down and a qkv projection over 4 pictures of 577 tokens,
# and one square product.
SHAPES = ((4 * 577, 768, 3072), (4 * 577, 3072, 768), (4 * 577, 768, 2304), (2048, 2048, 2048))


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: kernels chosen, weights packed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(precision: str, repeats: int) -> tuple[float, tuple[int, int, int]]:
    """(best GFLOP/s, the shape that gave it) of one product in `precision`."""
    import torch

    best = (0.0, SHAPES[0])
    for rows, inner, out in SHAPES:
        x = torch.randn(rows, inner)
        if precision == "int8":
            from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

            with warnings.catch_warnings():  # quantized tensors' deprecation notice: see models/quantize.py
                warnings.simplefilter("ignore")
                layer = DynamicLinear(inner, out, dtype=torch.qint8)
            layer.set_weight_bias(torch.quantize_per_tensor(torch.randn(out, inner) / 30, 1 / 256, 0, torch.qint8),
                                  torch.zeros(out))

            def product(layer=layer, x=x):
                return layer(x)
        else:
            dtype = sbs.torch_dtype(precision)
            a, w = x.to(dtype), torch.randn(inner, out, dtype=dtype)

            def product(a=a, w=w):
                return a @ w
        with torch.inference_mode():
            seconds = median_seconds(product, repeats)
        rate = 2 * rows * inner * out / seconds / 1e9
        if rate > best[0]:
            best = (rate, (rows, inner, out))
    return best


def flops(fn) -> int:
    """Every matmul's FLOPs. Attention is counted through torch's math path: FlopCounterMode has no formula
    for the CPU's fused attention kernel and would leave out 11 % of a ViT-B/16 at 384 px."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def model_rows(case: sbs.Case, precisions, batch_size: int, repeats: int, peaks: dict,
               shares: dict) -> list[list[str]]:
    """One table row per precision; `shares[precision]` gets the vision encoder's share of that peak."""
    import torch
    from caption_throughput import scenes

    from mmstudio.engine import Engine
    from mmstudio.models.base import LoadOptions, Task

    images = scenes(batch_size, seed=3)
    rows, counted = [], None
    for precision in precisions:
        adapter = Engine(LoadOptions(device="cpu", dtype=precision)).adapter(Task.CAPTION, case.name)
        model = adapter.model
        inputs = adapter.image_processor(images=images, return_tensors="pt")["pixel_values"]
        inputs = inputs.to(adapter.dtype if precision != "int8" else torch.float32)

        def vision(model=model, inputs=inputs):
            return model.vision_model(pixel_values=inputs)

        def caption(model=model, inputs=inputs):
            return model.generate(pixel_values=inputs, max_new_tokens=20, min_new_tokens=20, num_beams=1,
                                  do_sample=False)

        with torch.inference_mode():
            if counted is None:  # the first precision is fp32 (enforced below): count there
                counted = flops(vision), flops(caption)
            vision_s = median_seconds(vision, repeats)
            caption_s = median_seconds(caption, max(1, repeats // 2))
        vision_flops, caption_flops = counted
        decoder_s, decoder_flops = max(caption_s - vision_s, 1e-9), caption_flops - vision_flops
        peak = peaks[precision][0]
        v_rate, d_rate = vision_flops / vision_s / 1e9, decoder_flops / decoder_s / 1e9
        rows.append([f"{case.label} {precision}", f"{vision_flops / batch_size / 1e9:.2f}",
                     f"{vision_s / batch_size * 1e3:.1f}", f"{v_rate:.0f}", f"{v_rate / peak:.0%}",
                     f"{decoder_s / batch_size * 1e3:.0f}", f"{d_rate:.1f}", f"{d_rate / peak:.1%}"])
        shares[precision] = v_rate / peak
        del adapter, model
    return rows


def main() -> int:
    p = sbs.parser(__doc__)
    sbs.add_models(p)
    p.add_argument("--dtypes", default=",".join(PRECISIONS), help="precisions to measure (default all; fp32 first)")
    p.add_argument("--batch-size", type=int, default=None, help="pictures per vision pass (default 8, --quick 2)")
    args = p.parse_args()
    precisions = ["fp32", *[d for d in args.dtypes.split(",") if d != "fp32"]]
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        p.error(f"--dtypes: unknown {', '.join(sorted(unknown))}")
    sbs.setup(args)
    import torch

    repeats = sbs.sized(args, args.repeats, 2, 5)
    batch_size = sbs.sized(args, args.batch_size, 2, 8)
    print(f"roofline: cpu, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{repeats} timed runs (median), batch {batch_size}")
    peaks = {precision: matmul_peak(precision, repeats) for precision in precisions}
    sbs.table(["precision", "matmul peak GFLOP/s", "at (rows, inner, out)"],
              [[precision, f"{rate:.0f}", str(shape)] for precision, (rate, shape) in peaks.items()])
    print()
    cases = sbs.cases(args, "caption", {"builtin": (repeats, repeats), "base": (repeats, repeats)})
    rows, shares = [], {}
    for case in cases:
        shares[case.label] = {}
        rows += model_rows(case, precisions, batch_size, repeats, peaks, shares[case.label])
    sbs.table(["model", "vision GFLOP/img", "vision ms/img", "vision GFLOP/s", "of peak", "decoder ms/img",
               "decoder GFLOP/s", "of peak"], rows)
    if "base" in shares:
        base = shares["base"]
        met = [k for k, v in base.items() if v >= GOAL]
        missed = [k for k, v in base.items() if v < GOAL]
        print("summary: base-size vision encoder, share of its precision's matmul peak: "
              + ", ".join(f"{k} {v:.0%}" for k, v in base.items())
              + f" (goal >= {GOAL:.0%}: met in {', '.join(met) or 'none'}"
              + (f"; NOT met in {', '.join(missed)})" if missed else ")"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the mmstudio-vs-plain-transformers benchmarks share: options, the models to run, loading the plain
side, interleaved timing, the result table.

The two sides run in one process with the same torch thread count, the same
device and dtype, and are timed alternately (A B, B A, A B, ...) so that a
noisy machine slows both alike; each side's figure is the median of its runs.

Threads default to torch's own (the machine's cores), as mmstudio runs. On a
machine whose cores are all busy with another job, a second intra-op thread
makes every small op wait for a descheduled thread (a 768 x 3072
matrix-vector product took 8 ms on 2 threads against 0.4 ms on 1 on the 2-core
development VM), which slows the plain side's many small ops far more than the
batched side and inflates the ratio: there pass --threads 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
MODELS = ("builtin", "base")  # the order the models run and are listed in, whatever the order in --models


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer images and repeats: under a minute on a CPU")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="weights and inputs (default fp32)")
    p.add_argument("--our-dtype", default=None, choices=[*sorted(DTYPES), "int8"],
                   help="mmstudio's side only (default: --dtype): e.g. int8 against plain transformers in fp32")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads for both sides (default: the machine's cores; on a machine whose "
                        "cores are busy with another job, 1: more make every small op wait for a descheduled "
                        "thread)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per side (median reported)")
    return p


def add_models(p: argparse.ArgumentParser, default: str = "builtin,base") -> None:
    """--models: which of the built-in model and the base-size checkpoint (random weights) to run."""
    named = default.split(",")
    listed = ",".join(named + [m for m in MODELS if m not in named])
    p.add_argument("--models", default=default,
                   help=f"which of {listed} to run (default {'both' if set(named) == set(MODELS) else default})")


def sized(args: argparse.Namespace, given: int | None, quick: int, full: int) -> int:
    """`given` where the command line set it, else the --quick or the full default."""
    return given or (quick if args.quick else full)


@dataclass
class Case:
    """One model to measure: `label` builtin or base, `name` what the Engine takes as model=, `repeats` runs a side."""

    label: str
    name: str
    repeats: int

    @property
    def title(self) -> str:
        # the base-size checkpoint's cache path tells a reader nothing; that its weights are random does
        return f"{self.label} ({self.name if self.label == 'builtin' else 'random weights'})"


def cases(args: argparse.Namespace, task: str, repeats: dict[str, tuple[int, int]]) -> list[Case]:
    """The models --models names, for `task` (caption, vqa, retrieval): builtin:<task> and the base-size checkpoint.

    The base-size checkpoint is built if missing, and only when asked for. Each model runs --repeats times, else
    repeats[label] = (with --quick, without).
    """
    from base_size import checkpoint

    wanted = args.models.split(",")
    return [Case(label, f"builtin:{task}" if label == "builtin" else str(checkpoint(task)),
                 sized(args, args.repeats, *repeats[label]))
            for label in MODELS if label in wanted]


def setup(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mmstudio.models.loading import quiet_transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    quiet_transformers()
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on both sides


def forget(adapter) -> None:
    """Clear everything an adapter keeps per image, so the next image is new to it."""
    clear = getattr(adapter, "clear_caches", None)
    clear() if clear else adapter.cache.clear()


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


def engine(args: argparse.Namespace):
    from mmstudio.engine import Engine
    from mmstudio.models.base import LoadOptions

    return Engine(LoadOptions(device=args.device, dtype=args.our_dtype or args.dtype))


def plain(cls_name: str, folder, args: argparse.Namespace):
    """(processor, model) the way the transformers documentation loads a BLIP checkpoint."""
    import transformers
    from transformers import BlipProcessor

    processor = BlipProcessor.from_pretrained(folder)
    model = getattr(transformers, cls_name).from_pretrained(folder, dtype=torch_dtype(args.dtype)).to(args.device)
    return processor, model.eval()


def to_device(inputs, args: argparse.Namespace):
    """`processor(...).to(device, dtype)` as in the docs' half-precision examples (casts floating tensors only)."""
    return inputs.to(args.device, torch_dtype(args.dtype))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class Timing:
    """Median wall-clock seconds of a side's runs, and the median CPU seconds of this process in them.

    On a CPU the CPU time is what the work itself cost: a machine whose cores are shared with another
    job stretches the wall clock (the process waits for a core) but not that.
    """

    wall: float
    cpu: float
    runs: int


def timed(fn: Callable[[], object], device: str) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call, the device synchronised before and after."""
    sync(device)
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu, result


def interleaved(sides: dict[str, Callable[[], object]], repeats: int, device: str,
                before: Callable[[str], None] | None = None) -> tuple[dict[str, Timing], dict[str, object]]:
    """Each side's Timing over `repeats` alternating runs (A B, B A, ...), and each side's last result.

    `before(name)` runs untimed before each run (e.g. clearing a cache).
    """
    names = list(sides)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, object] = {}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            if before:
                before(name)
            wall, cpu, results[name] = timed(sides[name], device)
            walls[name].append(wall)
            cpus[name].append(cpu)
    timings = {n: Timing(statistics.median(walls[n]), statistics.median(cpus[n]), repeats) for n in names}
    return timings, results


def header(args: argparse.Namespace, what: str) -> None:
    import torch
    import transformers

    where = args.device
    if args.device.startswith("cuda"):
        where += f" ({torch.cuda.get_device_name(torch.device(args.device))})"
    ours = f" (mmstudio {args.our_dtype})" if args.our_dtype and args.our_dtype != args.dtype else ""
    print(f"{what}: device {where}, dtype {args.dtype}{ours}, torch {torch.__version__} "
          f"threads {torch.get_num_threads()}, transformers {transformers.__version__}")


def table(columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths))))
    for row in rows:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))


def yes_no(same: bool) -> str:
    return "yes" if same else "no"


def token_range(tokenizer, texts: list[str]) -> str:
    """The fewest to the most tokens in `texts`, e.g. "4-19" ("0" for no texts)."""
    lengths = sorted({len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts})
    return f"{lengths[0]}-{lengths[-1]}" if lengths else "0"


@dataclass
class Row:
    """One line of a comparison table; `plain` and `ours` are formatted in the table's unit, the ratios are floats."""

    case: Case
    params: int
    details: list[str]  # what was measured (images, texts, runs, ...): the columns between params and the timings
    plain: str
    ours: str
    ratio: float  # how many times faster mmstudio's side is on the wall clock
    cpu_ratio: float
    goal: str
    same: bool
    last: str


def comparison(device: str, details: list[str], unit: str, last: str, rows: list[Row]) -> None:
    """The result table: model, params, `details` columns, both sides in `unit`, ratios, goal, same output, `last`.

    The CPU-time ratio is shown on a CPU only, where it is what the work itself cost (see Timing).
    """
    on_cpu = device == "cpu"
    columns = ["model", "params", *details, f"plain {unit}", f"mmstudio {unit}", "ratio"]
    columns += ["ratio (CPU time)"] if on_cpu else []
    columns += ["goal", "same output", last]
    lines = []
    for r in rows:
        line = [r.case.title, f"{r.params / 1e6:.1f}M", *r.details, r.plain, r.ours, f"{r.ratio:.2f}x"]
        line += [f"{r.cpu_ratio:.2f}x"] if on_cpu else []
        line += [r.goal, yes_no(r.same), r.last]
        lines.append(line)
    table(columns, lines)

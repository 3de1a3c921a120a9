"""Do the built-in models say the same in bf16 and int8 as in fp32? Output by output, on one scene set.

    python bench/precision_agreement.py --data DIR [--limit N] [--dtypes bf16,int8] [--threads N] [--device D]

DIR is a Shapes World dataset (`mmstudio world generate --out DIR --count 1000 --seed 2000` gives the
validation scenes the model cards use). For every scene, each precision's caption (builtin:caption,
greedy), answer to every question (builtin:vqa) and ITM decision at 0.5 for every text evaluation scores
(the caption, its hard negatives, the partial descriptions and near misses; builtin:retrieval) is
compared with fp32's. Prints the share of identical outputs and, for ITM, the largest change of the
probability. `mmstudio eval --dtype D` gives each precision's accuracy; this says how many single
outputs changed, which an accuracy can hide (one more right, one more wrong).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import side_by_side as sbs  # noqa: E402


def outputs(precision: str, rows: dict, device: str, batch_size: int = 32) -> dict:
    """Each task's outputs in `precision`: captions, answers, (decision, probability) per text."""
    from mmstudio.engine import Engine
    from mmstudio.imaging import load_image
    from mmstudio.models.base import LoadOptions
    from mmstudio.training.itm_probes import decision_texts

    engine = Engine(LoadOptions(device=device, dtype=precision))
    captions = []
    for start in range(0, len(rows["caption"]), batch_size):
        images = [load_image(r["_path"]) for r in rows["caption"][start:start + batch_size]]
        captions += [r.caption for r in engine.caption(images, batch_size=batch_size)]
    answers = []
    for row in rows["vqa"]:
        results = engine.ask(load_image(row["_path"]), [q["question"] for q in row["questions"]])
        answers += [r.answer for r in results]
    scores = []
    for i, row in enumerate(rows["itm"]):
        results = engine.match(load_image(row["_path"]), [text for text, _ in decision_texts(row, i)])
        scores += [r.itm for r in results]
    engine.unload_all()
    return {"caption": captions, "vqa": answers, "itm": scores}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a Shapes World dataset folder")
    p.add_argument("--limit", type=int, default=None, help="only the first N scenes")
    p.add_argument("--dtypes", default="bf16,int8", help="precisions to compare with fp32 (default bf16,int8)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: the machine's cores)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu; int8 runs on the CPU only)")
    args = p.parse_args()
    args.quick = False
    sbs.setup(args)
    import torch

    from mmstudio.models.base import Task
    from mmstudio.training.evaluate import scene_rows

    rows = {task.value: scene_rows(args.data, task, args.limit) for task in (Task.CAPTION, Task.VQA, Task.ITM)}
    print(f"precision agreement with fp32: {len(rows['caption'])} scenes of {args.data}, {args.device}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    timed = {}
    for precision in ["fp32", *args.dtypes.split(",")]:
        start = time.perf_counter()
        timed[precision] = outputs(precision, rows, args.device)
        print(f"  {precision}: {time.perf_counter() - start:.0f} s", flush=True)
    reference = timed.pop("fp32")
    table = []
    for precision, got in timed.items():
        same_caption = sum(a == b for a, b in zip(got["caption"], reference["caption"]))
        same_answer = sum(a == b for a, b in zip(got["vqa"], reference["vqa"]))
        same_decision = sum((a > 0.5) == (b > 0.5) for a, b in zip(got["itm"], reference["itm"]))
        drift = max(abs(a - b) for a, b in zip(got["itm"], reference["itm"]))
        table.append([precision, f"{same_caption / len(got['caption']):.1%} of {len(got['caption'])}",
                      f"{same_answer / len(got['vqa']):.1%} of {len(got['vqa'])}",
                      f"{same_decision / len(got['itm']):.1%} of {len(got['itm'])}", f"{drift:.3f}"])
    sbs.table(["precision", "same caption", "same answer", "same ITM decision", "largest ITM change"], table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A storm of random requests through the real inference worker, with a summary table.

    python bench/worker_stress.py [--count 1000] [--seed 20261129] [--no-builtin] [--threads 1]

The same storm as tests/test_worker_reliability.py (tests/request_storm.py): captions,
questions, matches, searches and model loads (good ones, broken folders, models of the
wrong task), corrupt and missing images, empty and over-long texts, and cancellations
before and while requests run. Tiny BLIP checkpoints are built in a temporary folder;
the built-in models join in where the checkout has them. Search indexes go to a
temporary XDG_CACHE_HOME. Prints requests per outcome, RSS after the first fifth of
the requests and at the end, and the wall time; exits 1 if any request went wrong.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--no-builtin", action="store_true", help="only the tiny models")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1 is fastest)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmstudio-worker-stress-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    import torch
    from PySide6.QtCore import QCoreApplication

    from mmstudio.gui.worker import InferenceClient
    from mmstudio.models.base import Task
    from tests.conftest import build_tiny_checkpoint
    from tests.request_storm import Storm
    from tests.storm_world import build_world

    torch.set_num_threads(args.threads)
    app = QCoreApplication.instance() or QCoreApplication([sys.argv[0]])  # noqa: F841 - the worker's signals need it
    tiny = {task: build_tiny_checkpoint(task, work / "tiny" / task.value) for task in Task}
    client = InferenceClient()
    try:
        storm = Storm(client, build_world(work / "world", tiny, builtin=not args.no_builtin), args.seed)
        storm.load_first_models()
        report = storm.run(args.count, warmup=args.count // 5)
    finally:
        client.stop()

    rows = [(f"outcome: {outcome}", count) for outcome, count in sorted(report.outcomes.items())]
    rows.append(("all (+ 3 first loads and 1 last)", sum(report.outcomes.values())))
    rows += [("", ""), *((f"request: {kind}", count) for kind, count in sorted(report.kinds.items()))]
    rows += [("", ""), *((f"cancel sent: {how}", count) for how, count in sorted(report.cancels.items()))]
    mib = 2**20
    rows += [
        ("", ""),
        (f"RSS after {args.count // 5} requests", f"{report.rss_warm / mib:.0f} MiB"),
        (f"RSS after {args.count} requests", f"{report.rss_end / mib:.0f} MiB ({report.rss_growth / mib:+.1f} MiB)"),
        ("wall time", f"{report.seconds:.1f} s ({report.seconds / args.count * 1000:.0f} ms per request)"),
        ("problems", len(report.problems)),
    ]
    print(f"worker stress: {args.count} requests, seed {args.seed}, models {sorted(storm.world.models[Task.CAPTION])}")
    for label, value in rows:
        print(f"  {label:<36} {value:>12}" if label else "")
    for problem in report.problems[:20]:
        print("PROBLEM:", problem)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Startup: from process start to the main window shown, and to the first caption on the built-in model.

    python bench/startup.py [--runs 5] [--quick]

Each run starts `python -m mmstudio SCENE.png` as a new process (fresh settings,
offscreen Qt unless --display) with the app's startup trace on
(mmstudio/gui/qt_startup_trace.py), and takes the times from the process start.
Side by side, in the same rounds, a plain-transformers script does what a user
would otherwise write for one caption (import, from_pretrained, generate), so the
ratio says what the app's start costs beyond the libraries themselves.
Goals (issue 8): window <= 1.5 s, first caption <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN_SCRIPT = """
import sys, time
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor
folder, image = sys.argv[1], sys.argv[2]
processor = BlipProcessor.from_pretrained(folder)
model = BlipForConditionalGeneration.from_pretrained(folder)
inputs = processor(images=Image.open(image).convert("RGB"), return_tensors="pt")
caption = processor.decode(model.generate(**inputs, max_new_tokens=30)[0], skip_special_tokens=True)
print(time.time(), caption)
"""


def scene(folder: Path) -> Path:
    import numpy as np

    from mmstudio.world import render_scene, sample_scene

    path = folder / "scene.png"
    render_scene(sample_scene(np.random.default_rng(3))).save(path)
    return path


def app_once(image: Path, workdir: Path, display: bool) -> dict:
    trace = workdir / "trace.jsonl"
    trace.unlink(missing_ok=True)
    env = {**os.environ, "MMSTUDIO_TRACE_STARTUP": str(trace), "MMSTUDIO_TRACE_STARTUP_EXIT": "1",
           "XDG_CONFIG_HOME": str(workdir / "config"), "XDG_DATA_HOME": str(workdir / "data")}
    if not display:
        env["QT_QPA_PLATFORM"] = "offscreen"
    start = time.time()
    subprocess.run([sys.executable, "-m", "mmstudio", str(image)], env=env, check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = {e["event"]: e for e in map(json.loads, trace.read_text().splitlines())}
    caption = events["first-caption"]
    if caption.get("error"):
        raise RuntimeError(f"the app's first caption failed: {caption['error']}")
    return {"window": events["window-shown"]["time"] - start, "caption": caption["time"] - start,
            "rss": caption["peak_rss_mb"]}


def plain_once(image: Path) -> float:
    from mmstudio.resources import builtin_models_dir

    start = time.time()
    out = subprocess.run([sys.executable, "-c", PLAIN_SCRIPT, str(builtin_models_dir() / "caption"), str(image)],
                         check=True, timeout=300, capture_output=True, text=True)
    return float(out.stdout.split()[0]) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 runs of each")
    parser.add_argument("--display", action="store_true", help="use $DISPLAY (e.g. Xvfb) instead of offscreen Qt")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        image = scene(workdir)
        app_runs, plain_runs = [], []
        for _ in range(runs):  # interleaved: both sides see the same machine load
            app_runs.append(app_once(image, workdir, args.display))
            plain_runs.append(plain_once(image))
    window = statistics.median(r["window"] for r in app_runs)
    caption = statistics.median(r["caption"] for r in app_runs)
    plain = statistics.median(plain_runs)
    rss = max(r["rss"] for r in app_runs)
    print(f"{runs} runs each, medians, seconds from process start; {os.cpu_count()} CPU cores")
    print(f"{'milestone':<44}{'seconds':>10}{'goal':>8}")
    print(f"{'app: main window shown':<44}{window:>10.2f}{'1.5':>8}")
    print(f"{'app: first caption (built-in model)':<44}{caption:>10.2f}{'5.0':>8}")
    print(f"{'plain transformers script: first caption':<44}{plain:>10.2f}{'':>8}")
    print(f"{'app peak RSS at first caption (MB)':<44}{rss:>10.0f}{'':>8}")
    print(f"summary: window {window:.2f} s ({'met' if window <= 1.5 else 'NOT met'}), first caption "
          f"{caption:.2f} s ({'met' if caption <= 5 else 'NOT met'}); the app's first caption takes "
          f"{caption / plain:.2f}x the time of a bare transformers script that shows no window")


if __name__ == "__main__":
    main()

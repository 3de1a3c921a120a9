"""Peak memory with all built-in models loaded: the app, the CLI engine, and plain transformers.

    python bench/memory.py [--quick]

Each case runs in its own process and reports its peak RSS (ru_maxrss) after
loading the caption, VQA and retrieval models and using each once with evidence
maps (the heaviest path):
- app: the real main window (offscreen Qt) with its inference worker, sent a
  caption, a question and two texts to score for one image;
- engine: mmstudio's core alone, as the CLI uses it;
- plain: the three checkpoints through transformers' from_pretrained + forward,
  what a user would otherwise write (no Qt, no evidence maps).
Goal (issue 8): <= 1.5 GB RSS with all built-in models loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

GOAL_MB = 1536
QUESTION, TEXTS = "how many objects are there?", ("a large red circle", "a small blue square")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def scene():
    import numpy as np

    from mmstudio.world import render_scene, sample_scene

    return render_scene(sample_scene(np.random.default_rng(3)))


def run_engine() -> dict:
    from mmstudio.engine import Engine

    engine, image = Engine(), scene()
    engine.caption([image], attention=True)
    engine.ask(image, [QUESTION], attention=True)
    engine.match(image, list(TEXTS), attention=True)
    return {"models": len(engine.loaded())}


def run_plain() -> dict:
    import torch
    from transformers import (
        BlipForConditionalGeneration,
        BlipForImageTextRetrieval,
        BlipForQuestionAnswering,
        BlipProcessor,
    )

    from mmstudio.resources import builtin_models_dir

    root, image = builtin_models_dir(), scene()
    models = []
    for folder, cls in (("caption", BlipForConditionalGeneration), ("vqa", BlipForQuestionAnswering),
                        ("retrieval", BlipForImageTextRetrieval)):
        processor = BlipProcessor.from_pretrained(root / folder)
        model = cls.from_pretrained(root / folder)
        models.append(model)
        with torch.inference_mode():
            if folder == "retrieval":
                model(**processor(images=image, text=TEXTS[0], return_tensors="pt"))
            else:
                text = QUESTION if folder == "vqa" else None
                model.generate(**processor(images=image, text=text, return_tensors="pt"), max_new_tokens=20)
    return {"models": len(models)}


def run_app() -> dict:
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from mmstudio.gui.main_window import MainWindow
    from mmstudio.gui.qt_settings import Settings
    from mmstudio.jobs import JobStore
    from mmstudio.requests import AskRequest, CaptionRequest, ImageRef, MatchRequest

    app = QApplication.instance() or QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scene.png"
        scene().save(path)
        settings = Settings(QSettings(str(Path(folder) / "s.ini"), QSettings.Format.IniFormat))
        window = MainWindow(settings=settings, job_store=JobStore(Path(folder) / "jobs.json"))
        window.show()
        ref = ImageRef(key=str(path), path=path)
        requests = [CaptionRequest(images=(ref,)), AskRequest(image=ref, question=QUESTION),
                    MatchRequest(image=ref, texts=TEXTS)]
        outcomes: list = []
        loop = QEventLoop()
        for request in requests:
            ticket = window.client.submit(request)
            ticket.finished.connect(lambda outcome: (outcomes.append(outcome), len(outcomes) == 3 and loop.quit()))
            ticket.failed.connect(lambda exc: (outcomes.append(exc), loop.quit()))
        QTimer.singleShot(300_000, loop.quit)
        loop.exec()
        failures = [o for o in outcomes if isinstance(o, Exception)]
        window.close()
        app.processEvents()
    if len(outcomes) != 3 or failures:
        raise RuntimeError(f"the app did not answer all three requests: {outcomes}")
    return {"models": 3}


CASES = {"app": run_app, "engine": run_engine, "plain": run_plain}
LABELS = {"app": "app window + worker, 3 models used", "engine": "mmstudio engine (CLI), 3 models used",
          "plain": "plain transformers, 3 models used"}


def measure(case: str) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, __file__, "--child", case], env=env, check=True, timeout=600,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the same three processes (they take seconds)")
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        info = CASES[args.child]()
        print(json.dumps({**info, "peak_mb": round(peak_mb(), 1)}))
        return
    peaks = {case: measure(case) for case in CASES}
    print(f"{'process':<42}{'peak RSS (MB)':>15}")
    for case, peak in peaks.items():
        print(f"{LABELS[case]:<42}{peak:>15.0f}")
    worst = max(peaks["app"], peaks["engine"])
    print(f"summary: peak RSS {worst:.0f} MB with all built-in models loaded (goal {GOAL_MB} MB: "
          f"{'met' if worst <= GOAL_MB else 'NOT met'}); the app uses {peaks['app'] / peaks['plain']:.2f}x "
          f"the memory of plain transformers")


if __name__ == "__main__":
    main()

"""`mmstudio --self-test`: prove an installation works end to end, frozen or not.

Each check prints one line; the exit code is 0 only if every check gave the
expected result. It needs no network and no display (Qt runs offscreen). It
lives with the entry points because it opens the window: the core never imports Qt.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from mmstudio.engine import Engine
from mmstudio.imaging import load_image
from mmstudio.jobs import JobProcess, prepare_launch
from mmstudio.models.base import Task
from mmstudio.training.run import TrainConfig
from mmstudio.training.selftest_scene import best_match_is_truth, scene, scene_seed
from mmstudio.vector_index import NearestIndex
from mmstudio.world import generate_dataset


def run_self_test(emit: Callable[[str], None] = print) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    failures = 0

    def check(name: str, func: Callable[[], str]) -> None:
        nonlocal failures
        started = time.monotonic()
        try:
            detail = func()
            emit(f"PASS  {name} ({time.monotonic() - started:.1f} s){': ' + detail if detail else ''}")
        except Exception as exc:  # noqa: BLE001 - a self-test reports every failure and goes on
            failures += 1
            emit(f"FAIL  {name}: {type(exc).__name__}: {exc}")
            if os.environ.get("MMSTUDIO_DEBUG"):
                traceback.print_exc()

    engine = Engine()
    _, image, truth, qas, negatives = scene(scene_seed())

    def caption_check() -> str:
        got = engine.caption([image], attention=True)[0]
        assert got.caption == truth, f"caption {got.caption!r}, expected {truth!r}"
        assert got.attention is not None and got.attention.maps().shape[0] == len(got.tokens)
        return got.caption

    def vqa_check() -> str:
        results = engine.ask(image, [qa.question for qa in qas], attention=True)
        wrong = [(qa.question, r.answer, qa.answer) for qa, r in zip(qas, results) if r.answer != qa.answer]
        assert not wrong, f"wrong answers: {wrong}"
        return f"{len(qas)} questions right"

    def itm_check() -> str:
        results = engine.match(image, [truth, *negatives], attention=True)
        best = max(results, key=lambda r: r.itm)
        assert best_match_is_truth(results, truth), f"best match {best.text!r} ({best.itm:.2f})"
        return f"true caption {results[0].itm:.1%}, best negative {max(r.itm for r in results[1:]):.1%}"

    check("built-in caption model", caption_check)
    check("built-in VQA model", vqa_check)
    check("built-in retrieval model", itm_check)
    check("built-in chat model", lambda: _chat_check(engine, image, truth, qas))
    check("main window (offscreen)", _window_check)
    check("5-step fine-tuning job", _training_check)
    check("collections: graph search and the map", _collections_check)
    total = 7
    emit(f"{total - failures} of {total} checks passed")
    return 0 if failures == 0 else 1


def _chat_check(engine: Engine, image, truth: str, qas) -> str:
    """The image-text-to-text family as installed: the LLaVA describes and answers through its chat
    template, and each word it writes has a map."""
    got = engine.caption([image], attention=True, model="builtin:chat")[0]
    assert got.caption == truth, f"caption {got.caption!r}, expected {truth!r}"
    assert got.attention is not None and got.attention.maps().shape[0] == len(got.tokens)
    results = engine.ask(image, [qa.question for qa in qas], model="builtin:chat")
    wrong = [(qa.question, r.answer, qa.answer) for qa, r in zip(qas, results) if r.answer != qa.answer]
    assert not wrong, f"wrong answers: {wrong}"
    return f"{got.caption!r}, {len(qas)} questions right"


def _window_check() -> str:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from mmstudio.gui.selfcheck import open_main_window

    return open_main_window()


def _training_check() -> str:
    with tempfile.TemporaryDirectory() as folder:
        data = generate_dataset(Path(folder) / "data", 16, seed=7, size=128)
        config = TrainConfig(task=Task.CAPTION, data=data, out=Path(folder) / "run", steps=5, batch_size=4,
                             save_every=5, log_every=1)
        job = JobProcess(prepare_launch(config), lambda event: None)
        code = job.wait(timeout=600)
        kinds = [e.get("event") for e in job.events]
        assert code == 0, f"job exited {code}: {job.events[-1]}"
        assert kinds.count("progress") == 5 and "done" in kinds, f"events: {kinds}"

        first = sorted((data / "images").iterdir())[0]
        caption = Engine().caption([load_image(first)], model=str(config.out))[0].caption
    return f"5 steps, checkpoint loads and captions ({caption!r})"


def _collections_check() -> str:
    """The libraries a large collection needs, present and working: the nearest-neighbour graph (usearch),
    kept and mapped back, and the map's plot (pyqtgraph)."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [str(i) for i in range(len(vectors))]
    with tempfile.TemporaryDirectory() as folder:
        built = NearestIndex(vectors, keys=keys, cache=Path(folder), exact_up_to=0)
        mapped = NearestIndex(vectors, keys=keys, cache=Path(folder), exact_up_to=0)
        assert built.approximate and mapped.built_seconds == 0, built.note or mapped.note
        rows, _ = mapped.search(vectors[123], 1)
        assert rows.tolist() == [123], f"nearest of vector 123: {rows.tolist()}"
        del built, mapped  # the mapped file is let go before its folder is removed (Windows)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph

    return f"usearch graph of 2,000 vectors saved and mapped back; pyqtgraph {pyqtgraph.__version__}"

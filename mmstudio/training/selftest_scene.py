"""The scene the self-test checks the built-in models on, chosen when the models are published.

The recipe records (beside the models) the first scene on which every built-in
model is right; `mmstudio --self-test` (mmstudio/cli/selftest.py) then expects
exactly that scene's truth from an installed copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmstudio.engine import Engine
from mmstudio.resources import builtin_models_dir
from mmstudio.world import caption, hard_negatives, questions, render_scene, sample_scene

SCENE_FILE = "selftest.json"  # beside the built-in models: the scene their publisher checked them on
DEFAULT_SEED = 12345


def scene(seed: int):
    """(scene, image, caption, questions, hard negatives) of a plain canonical scene: two objects, 128 px."""
    rng = np.random.default_rng(seed)
    drawn = sample_scene(rng, size=128, n_objects=2)
    return drawn, render_scene(drawn), caption(drawn), questions(drawn, rng), hard_negatives(drawn, rng)


def scene_seed(models_dir: Path | None = None) -> int:
    try:
        return int(json.loads(((models_dir or builtin_models_dir()) / SCENE_FILE).read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_SEED


def choose_scene(models_dir: Path, tries: int = 200) -> int | None:
    """Record the first scene on which every built-in model is right, so the self-test's expected
    results are the scene's truth *and* what these weights are known to give: any difference on an
    installed copy means the installation, not the model, is at fault.

    None, and no record, when no scene among `tries` suits (weak models, such as a shortened recipe's):
    the self-test then runs on its default scene, where these models' own mistakes will show."""

    engine = Engine()
    caption, vqa, itm, chat = (str(models_dir / name) for name in ("caption", "vqa", "retrieval", "chat"))

    def describes_and_answers(image, truth: str, qas, captioner: str, answerer: str) -> bool:
        answers = engine.ask(image, [qa.question for qa in qas], model=answerer)
        return (engine.caption([image], model=captioner)[0].caption == truth
                and all(r.answer == qa.answer for qa, r in zip(qas, answers)))

    for seed in range(DEFAULT_SEED, DEFAULT_SEED + tries):
        _, image, truth, qas, negatives = scene(seed)
        if (describes_and_answers(image, truth, qas, caption, vqa)
                and best_match_is_truth(engine.match(image, [truth, *negatives], model=itm), truth)
                and (not Path(chat).is_dir() or describes_and_answers(image, truth, qas, chat, chat))):
            (models_dir / SCENE_FILE).write_text(json.dumps({"seed": seed}) + "\n")
            return seed
    (models_dir / SCENE_FILE).unlink(missing_ok=True)  # an earlier model set's scene says nothing of these
    return None


def best_match_is_truth(results, truth: str) -> bool:
    best = max(results, key=lambda r: r.itm)
    return best.text == truth and results[0].itm > 0.5

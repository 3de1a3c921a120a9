"""The whole recipe that publishes the built-in models, shrunk to seconds: data, three stages, cards, reuse."""

from __future__ import annotations

import json

import pytest

from mmstudio.engine import Engine
from mmstudio.models.base import Task
from mmstudio.training.chat_model import ChatTraining
from mmstudio.training.recipe import FOLDER, Recipe, run_recipe
from mmstudio.world import generate_dataset


@pytest.mark.slow
def test_a_tiny_recipe_publishes_three_loadable_models_and_reuses_its_stages(tmp_path):
    recipe = Recipe(train_scenes=16, select_scenes=4, valid_scenes=4, caption_steps=2, vqa_steps=2, itm_steps=2,
                    itm_refine_steps=2, finetune_scenes=8, batch_size=4, vqa_images_per_batch=2, workers=1,
                    model_size="tiny", in_domain_scenes=(40, 30),
                    chat=ChatTraining(steps=2, distill_steps=2, batch_size=4, rows=8, log_every=1))
    out, work = tmp_path / "models", tmp_path / "work"
    heldout = generate_dataset(tmp_path / "heldout", 4, seed=9)
    events: list[dict] = []
    reports = run_recipe(out, work, recipe, emit=events.append, heldout=heldout)

    assert set(reports) == {task.value for task in Task}
    engine = Engine()
    for task in Task:
        folder = out / FOLDER[task]
        assert engine.adapter(task, str(folder)).info.parameters > 0
        record = json.loads((folder / "mmstudio.json").read_text())
        assert record["finished"] and "validation" in record and "heldout" in record
        assert (folder / "README.md").read_text().strip()
        # Every published model carries its in-domain check, fitted on its final weights.
        note = json.loads((folder / "in-domain.json").read_text())
        assert note["fit_scenes"] == 40 and set(note["flagged_in_domain"]) == {"valid", "heldout"}
        assert engine.adapter(task, str(folder)).in_domain_check is not None
        assert "## Out of the world" in (folder / "README.md").read_text()
    # The chat model: a LLaVA that captions and answers through its chat template, its layer chosen.
    chat = Engine().adapter(Task.VQA, str(out / "chat"))
    assert chat.info.family == "vlm" and Task.CAPTION in chat.info.tasks
    # Trained with eager attention, saved naming none: the app generates with the fused kernel.
    assert chat.model.config._attn_implementation != "eager"
    record = json.loads((out / "chat" / "mmstudio.json").read_text())
    assert {"caption", "vqa"} <= set(record["validation"]) and "heldout" in record
    assert set(record["attention"]) == {"caption_layer", "vqa_layer"}
    assert "# mmstudio built-in model: chat" in (out / "chat" / "README.md").read_text()
    assert chat.in_domain_check is not None and "## Out of the world" in (out / "chat" / "README.md").read_text()
    timings = json.loads((out / "recipe-timings.json").read_text())
    assert {"data", "caption", "vqa", "itm", "retrieval-refined", "chat", "training_total"} <= set(timings)
    # The published retrieval model is the second, low-LR stage, started from the first.
    base = json.loads((out / "retrieval" / "mmstudio.json").read_text())["config"]["base"]
    assert base == str(work / "retrieval")
    assert "2 steps at learning rate 0.0003, then 2 steps at 0.0001" in (out / "retrieval" / "README.md").read_text()
    # Models trained for two steps are right on hardly any scene: the run ends all the same, and records
    # a self-test scene only where one was found.
    chosen = [e for e in events if e["event"] == "self-test-scene"]
    assert len(chosen) == 1 and (chosen[0]["seed"] is None) == (not (out / "selftest.json").exists())

    again: list[dict] = []
    run_recipe(out, work, recipe, emit=again.append, reuse=True)
    assert [e["task"] for e in again if e["event"] == "reused"] == ["caption", "vqa", "itm", "itm", "chat"]
    assert not any(e["event"] == "generate" for e in again)

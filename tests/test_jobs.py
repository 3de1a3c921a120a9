"""Fine-tuning jobs through the same launcher the app uses: real subprocesses, read to the end."""

from __future__ import annotations

import random
import time

import pytest

from mmstudio.engine import Engine
from mmstudio.imaging import load_image
from mmstudio.jobs import JobProcess, JobStore, build_argv, prepare_launch, resume_config
from mmstudio.models.base import Task
from mmstudio.training.checkpoints import latest_checkpoint
from mmstudio.training.run import TrainConfig
from mmstudio.world import generate_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("jobs-world") / "data", 24, seed=11, size=96)


def config(world, out, **kw) -> TrainConfig:
    values = dict(task=Task.CAPTION, data=world, out=out, base="scratch", size="tiny", steps=6, batch_size=4,
                  save_every=2, log_every=1, threads=1)
    values.update(kw)
    return TrainConfig(**values)


def test_argv_runs_the_train_subcommand(world, tmp_path):
    argv = build_argv(config(world, tmp_path / "out"))
    assert argv[1:4] == ["-m", "mmstudio", "train"]
    assert argv[argv.index("--progress") + 1] == "json"


def test_invalid_data_is_refused_before_launch(tmp_path):
    from mmstudio.errors import DatasetError

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "metadata.jsonl").write_text('{"file_name": "nope.png", "caption": "a red circle"}\n')
    with pytest.raises(DatasetError, match="metadata.jsonl:1"):
        prepare_launch(config(tmp_path / "data", tmp_path / "out"))


def test_a_real_job_reports_progress_to_the_end(world, tmp_path):
    events = []
    job = JobProcess(prepare_launch(config(world, tmp_path / "run")), events.append)
    assert job.wait(timeout=300) == 0
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["prepared", "model"] and kinds[-2:] == ["done", "exit"]
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3, 4, 5, 6]
    assert all(e["total"] == 6 for e in events if e["event"] == "progress")
    caption = Engine().caption([load_image(world / "images" / "000000.png")], model=str(tmp_path / "run"))
    assert isinstance(caption[0].caption, str)


def test_stop_saves_a_checkpoint_and_resume_finishes(world, tmp_path):
    store = JobStore(tmp_path / "jobs.json")
    launch = prepare_launch(config(world, tmp_path / "run", steps=400, save_every=1000))
    record = store.new(launch)
    job = JobProcess(launch, record.absorb)
    deadline = time.monotonic() + 240
    while not any(e["event"] == "progress" and e["step"] >= 3 for e in job.events):
        assert time.monotonic() < deadline and job.running
        time.sleep(0.1)
    job.stop()
    assert job.wait(timeout=120) == 0
    assert record.status == "stopped"
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None
    Engine().caption([load_image(world / "images" / "000001.png")], model=str(checkpoint))
    store.save()
    reloaded = JobStore(tmp_path / "jobs.json").records[record.id]
    assert reloaded.curve and reloaded.status == "stopped"
    resumed = prepare_launch(resume_config(reloaded, steps=record_step(checkpoint) + 2))
    events = []
    assert JobProcess(resumed, events.append).wait(timeout=300) == 0
    assert events[-2]["event"] == "done" and events[-2]["finished"]


def record_step(checkpoint) -> int:
    return int(checkpoint.name.split("-")[1])


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_a_loadable_latest_checkpoint(world, tmp_path):
    """The reliability check: 5 kills at random moments; each time the latest checkpoint loads, and resume ends."""
    rng = random.Random(5)
    out = tmp_path / "run"
    steps = 60
    for attempt in range(5):
        events = []
        job = JobProcess(prepare_launch(config(world, out, steps=steps, save_every=3, resume=True)), events.append)
        time.sleep(rng.uniform(6.0, 14.0))
        job.kill()
        job.wait(timeout=60)
        checkpoint = latest_checkpoint(out)
        if checkpoint is not None:
            Engine().caption([load_image(world / "images" / "000002.png")], model=str(checkpoint))
    events = []
    job = JobProcess(prepare_launch(config(world, out, steps=steps, save_every=3, resume=True)), events.append)
    assert job.wait(timeout=600) == 0
    assert events[-2]["event"] == "done" and events[-2]["step"] == steps

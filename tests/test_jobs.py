"""Fine-tuning jobs through the same launcher the app uses: real subprocesses, read to the end."""

from __future__ import annotations

import dataclasses
import json
import random
import time

import pytest

from mmstudio.engine import Engine
from mmstudio.errors import MMStudioError
from mmstudio.imaging import load_image
from mmstudio.jobs import JobProcess, JobStore, Launch, job_command, prepare_launch, resume_config
from mmstudio.models.base import Task
from mmstudio.training.checkpoints import latest_checkpoint
from mmstudio.training.config import JOB_FILE, TrainConfig
from mmstudio.world import generate_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("jobs-world") / "data", 24, seed=11, size=96)


def config(world, out, **kw) -> TrainConfig:
    values = dict(task=Task.CAPTION, data=world, out=out, base="scratch", size="tiny", steps=6, batch_size=4,
                  save_every=2, log_every=1, threads=1)
    values.update(kw)
    return TrainConfig(**values)


def test_the_command_is_derived_from_the_config_file(world, tmp_path):
    launch = Launch(config(world, tmp_path / "out"))
    assert launch.argv[1:] == ["-m", "mmstudio", "train", "--config", str(tmp_path / "out" / JOB_FILE),
                               "--progress", "json"]
    assert not (tmp_path / "out").exists()  # nothing is written until the job starts


def test_old_job_records_load_and_say_how_to_resume(tmp_path):
    """jobs.json of before issue 17 kept each job's argv: it loads, and is resumed from a terminal, not parsed."""
    argv = ["/usr/bin/python3", "-m", "mmstudio", "train", "--task", "caption", "--data", "/d", "--out", "/o",
            "--progress", "json", "--steps", "10"]
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": [{
        "id": "abc", "task": "caption", "data": "/d", "out": "/o", "base": None, "created": 1.0,
        "status": "stopped", "curve": [[1, 2.0]], "evals": [], "argv": argv, "message": ""}]}))
    store = JobStore(tmp_path / "jobs.json")
    record = store.records["abc"]
    assert record.config is None and record.legacy_argv == argv and record.curve == [[1, 2.0]]
    with pytest.raises(MMStudioError, match="started by an older mmstudio") as info:
        resume_config(record)
    assert "--steps 10 --resume" in str(info.value)
    store.save()
    assert JobStore(tmp_path / "jobs.json").records["abc"].legacy_argv == argv


def test_invalid_data_is_refused_before_launch(tmp_path):
    from mmstudio.errors import DatasetError

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "metadata.jsonl").write_text('{"file_name": "nope.png", "caption": "a red circle"}\n')
    with pytest.raises(DatasetError, match="metadata.jsonl:1"):
        prepare_launch(config(tmp_path / "data", tmp_path / "out"))


@pytest.mark.slow
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


@pytest.mark.slow
def test_stop_saves_a_checkpoint_and_resume_finishes(world, tmp_path):
    store = JobStore(tmp_path / "jobs.json")
    # Settings a job could not carry before its config was data: a resume with the defaults would be refused.
    launch = prepare_launch(config(world, tmp_path / "run", steps=400, save_every=1000, weight_decay=0.02,
                                   warmup_ratio=0.1, pixel_cache=tmp_path / "pixels"))
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
    assert TrainConfig.read(tmp_path / "run" / JOB_FILE) == launch.config  # what the process ran
    assert reloaded.config == launch.config.to_document()  # the store keeps the config, not a command line
    steps = record_step(checkpoint) + 2
    assert resume_config(reloaded, steps=steps) == dataclasses.replace(launch.config, resume=True, steps=steps)
    resumed = prepare_launch(resume_config(reloaded, steps=steps))
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
    steps = 3000
    image = load_image(world / "images" / "000002.png")
    reached = []
    for _attempt in range(5):
        events = []
        job = JobProcess(prepare_launch(config(world, out, steps=steps, save_every=7, resume=True)), events.append)
        deadline = time.monotonic() + 120
        while not any(e["event"] == "checkpoint" for e in events) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))  # anywhere in training, saving included
        job.kill()
        assert job.wait(timeout=60) < 0  # it was killed, not finished
        checkpoint = latest_checkpoint(out)
        assert checkpoint is not None
        Engine().caption([image], model=str(checkpoint))  # loads and runs
        reached.append(int(checkpoint.name.split("-")[-1]))
    assert reached == sorted(reached) and reached[-1] > reached[0]  # every resume went on from the last one
    events = []
    job = JobProcess(prepare_launch(config(world, out, steps=steps, save_every=500, resume=True)), events.append)
    assert job.wait(timeout=900) == 0
    assert [e for e in events if e["event"] == "resume"][0]["step"] == reached[-1]
    assert [e for e in events if e["event"] == "done"][0]["step"] == steps
    Engine().caption([image], model=str(out))


@pytest.mark.slow
def test_the_same_command_trains_under_torchrun_with_two_processes(world, tmp_path):
    """Data-parallel on CPU (gloo): two ranks, one checkpoint, written once, that loads."""
    import json
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "ddp"
    launch = Launch(config(world, out, steps=4))
    launch.write_config()
    argv = job_command(launch.config)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *argv[1:]]  # torchrun runs `-m mmstudio train ...` once per rank
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the ranks too, not only torchrun
        raise
    assert process.returncode == 0, stderr[-3000:]
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2
    assert [e["step"] for e in events if e["event"] == "done"] == [4]  # rank 0 alone reports and saves
    caption = Engine().caption([load_image(world / "images" / "000002.png")], model=str(out))[0].caption
    assert isinstance(caption, str)

"""CPU threads: the machine's cores by default, a count from --threads, $MMSTUDIO_THREADS or the app's dialog,
applied in the thread that runs the models, shared among torchrun's processes."""

from __future__ import annotations

import threading

import pytest
import torch

from mmstudio.cli import main
from mmstudio.engine import Engine
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.threads import default_threads, machine_threads, use_threads


def in_a_thread(function):
    """What `function` returns when run in a thread of its own (torch's count is per thread)."""
    out = []
    worker = threading.Thread(target=lambda: out.append(function()))
    worker.start()
    worker.join()
    return out[0]


@pytest.fixture()
def scene_file(tmp_path, scene_images):
    path = tmp_path / "scene.png"
    scene_images[0].save(path)
    return path


def test_the_default_is_the_machines_cores_and_torchrun_shares_them(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads() == machine_threads() >= 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun --nproc_per_node=2 sets it
    import os

    assert default_threads() == max(1, len(os.sched_getaffinity(0)) // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_threads() == machine_threads()


def test_options_take_the_environment_and_a_count_changes_no_loaded_model(monkeypatch, tiny_models):
    monkeypatch.setenv("MMSTUDIO_THREADS", "1")
    assert LoadOptions().threads == 1
    monkeypatch.delenv("MMSTUDIO_THREADS")
    assert LoadOptions().threads == 0 and LoadOptions.chosen(threads=3).threads == 3

    def run():
        engine = Engine(LoadOptions(device="cpu", threads=1))
        first = engine.adapter(Task.CAPTION, str(tiny_models[Task.CAPTION]))
        seen = torch.get_num_threads()
        engine.use(Task.CAPTION, str(tiny_models[Task.CAPTION]), LoadOptions(device="cpu", threads=2))
        return seen, torch.get_num_threads(), engine.adapter(Task.CAPTION) is first

    assert in_a_thread(run) == (1, 2, True)
    assert in_a_thread(lambda: (use_threads(0), torch.get_num_threads())) == (default_threads(),) * 2


def test_cli_threads_flag_and_a_bad_environment_value(capsys, monkeypatch, tiny_models, scene_file):
    def run():
        code = main(["caption", "--model", str(tiny_models[Task.CAPTION]), "--threads", "1", str(scene_file)])
        return code, torch.get_num_threads()

    assert in_a_thread(run) == (0, 1)
    monkeypatch.setenv("MMSTUDIO_THREADS", "many")
    assert main(["caption", str(scene_file)]) == 2
    assert "$MMSTUDIO_THREADS: must be a positive integer, got 'many'" in capsys.readouterr().err

"""`mmstudio caption --out FILE --resume`: results written as they come; after kill -9, every input exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from mmstudio.cli import main
from mmstudio.models.base import Task


@pytest.fixture()
def folder(tmp_path, scene_images):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(24):
        scene_images[i % len(scene_images)].rotate(15 * i).save(pictures / f"scene{i:02d}.png")
    (pictures / "broken.png").write_bytes(b"not a picture")  # an error line is a result too
    return pictures


def lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_out_writes_what_json_prints_and_refuses_to_overwrite(capsys, tiny_models, folder, tmp_path):
    model = str(tiny_models[Task.CAPTION])
    main(["caption", "--model", model, "--json", "--batch-size", "4", str(folder)])
    printed = capsys.readouterr().out.splitlines()
    out = tmp_path / "out.jsonl"
    main(["caption", "--model", model, "--batch-size", "4", "--out", str(out), str(folder)])
    assert capsys.readouterr().out == ""  # the results went to the file
    assert lines(out) == printed and len(printed) == 25
    assert main(["caption", "--model", model, "--out", str(out), str(folder)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["caption", "--model", model, "--out", str(out), "--resume", str(folder)]) == 1  # broken.png
    assert "25 results kept, 0 images to go" in capsys.readouterr().err
    assert lines(out) == printed


@pytest.mark.slow
def test_killed_at_random_moments_a_resumed_run_has_every_input_once(tiny_models, folder, tmp_path):
    model = str(tiny_models[Task.CAPTION])
    reference = tmp_path / "reference.jsonl"
    command = [sys.executable, "-m", "mmstudio", "caption", "--model", model, "--batch-size", "2", str(folder)]
    subprocess.run([*command, "--out", str(reference)], check=False, timeout=300)
    expected = sorted(lines(reference))
    assert len(expected) == 25
    rng = random.Random(20261202)
    for attempt in range(3):
        out = tmp_path / f"out{attempt}.jsonl"
        kills = 0
        while True:
            process = subprocess.Popen([*command, "--out", str(out), "--resume"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            if kills < 2:  # kill -9 after a random share of the work, mid-batch or between batches
                wait_for = rng.randint(1, 20)
                deadline = time.monotonic() + 120
                while process.poll() is None and time.monotonic() < deadline:
                    if out.exists() and out.read_bytes().count(b"\n") >= wait_for:
                        time.sleep(rng.random() * 0.3)
                        break
                    time.sleep(0.01)
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    kills += 1
            process.wait(timeout=300)
            if process.returncode in (0, 1):  # finished (1: broken.png is an error line); -9: killed, again
                break
        assert sorted(lines(out)) == expected, f"attempt {attempt}"
        images = [json.loads(line)["image"] for line in lines(out)]
        assert len(images) == len(set(images)) == 25

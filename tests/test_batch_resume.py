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


def kill_and_resume(command: list[str], out, rng: random.Random, kills: int = 2) -> None:
    """Run `command --out out --resume` until it finishes, kill -9ing the first `kills` runs after a random
    share of the work (mid-batch or between batches)."""
    killed = 0
    while True:
        process = subprocess.Popen([*command, "--out", str(out), "--resume"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        if killed < kills:
            wait_for = rng.randint(1, 20)
            deadline = time.monotonic() + 120
            while process.poll() is None and time.monotonic() < deadline:
                if out.exists() and out.read_bytes().count(b"\n") >= wait_for:
                    time.sleep(rng.random() * 0.3)
                    break
                time.sleep(0.01)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                killed += 1
        process.wait(timeout=300)
        if process.returncode in (0, 1):  # finished (1: an input failed, an error line); -9: killed, again
            return


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
        kill_and_resume(command, out, rng)
        assert sorted(lines(out)) == expected, f"attempt {attempt}"
        images = [json.loads(line)["image"] for line in lines(out)]
        assert len(images) == len(set(images)) == 25


@pytest.mark.slow
def test_ask_killed_at_random_moments_resumes_to_every_answer_once(tiny_models, questions, tmp_path):
    """Two lines an image, the same image on two input lines: inputs are named by their line."""
    model = str(tiny_models[Task.VQA])
    reference = tmp_path / "reference.jsonl"
    command = [sys.executable, "-m", "mmstudio", "ask", "--model", model, "--input", str(questions)]
    subprocess.run([*command, "--out", str(reference)], check=False, timeout=300)
    expected = lines(reference)
    assert len(expected) == 22
    rng = random.Random(1202)
    for attempt in range(2):
        out = tmp_path / f"out{attempt}.jsonl"
        kill_and_resume(command, out, rng)
        assert lines(out) == expected, f"attempt {attempt}"


# ------------------------------------------------------------------ ask, match, index


@pytest.fixture()
def questions(folder, tmp_path):
    """An --input file: two questions an image (the same image on two lines), a bad line, a broken picture."""
    path = tmp_path / "questions.jsonl"
    rows = []
    for picture in sorted(folder.glob("scene0*.png")):
        rows += [{"image": str(picture), "question": "how many objects are there?"},
                 {"image": str(picture), "question": "what color is the circle?"}]
    rows.append({"image": str(folder / "broken.png"), "question": "what shape is it?"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n", encoding="utf-8")
    return path


def test_ask_out_names_each_input_by_its_line_and_a_resume_redoes_only_what_a_kill_cut(
        capsys, tiny_models, questions, tmp_path):
    model = str(tiny_models[Task.VQA])
    main(["ask", "--model", model, "--json", "--input", str(questions)])
    printed = capsys.readouterr().out.splitlines()
    out = tmp_path / "answers.jsonl"
    assert main(["ask", "--model", model, "--input", str(questions), "--out", str(out)]) == 1  # broken, bad line
    assert lines(out) == printed and [json.loads(x)["line"] for x in printed] == list(range(1, 23))
    whole = out.read_bytes()
    for cut in (len(whole) // 2, whole.index(b"\n", len(whole) // 3) + 1):  # mid-line, and between two lines
        out.write_bytes(whole[:cut])
        assert main(["ask", "--model", model, "--input", str(questions), "--out", str(out), "--resume"]) == 1
        assert lines(out) == printed
    capsys.readouterr()


def test_match_with_several_texts_an_image_resumes_whole_inputs(capsys, tiny_models, folder, tmp_path):
    model = str(tiny_models[Task.ITM])
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"image": str(p), "texts": ["a red circle", "a blue star", "a green square"]})
                             + "\n" for p in sorted(folder.glob("scene*.png"))[:6]), encoding="utf-8")
    main(["match", "--model", model, "--json", "--input", str(texts)])
    printed = capsys.readouterr().out.splitlines()
    out = tmp_path / "scores.jsonl"
    assert main(["match", "--model", model, "--input", str(texts), "--out", str(out)]) == 0
    assert capsys.readouterr().out == "" and lines(out) == printed and len(printed) == 18
    out.write_text("\n".join(printed[:8]) + "\n", encoding="utf-8")  # input 3 has 2 of its 3 lines
    assert main(["match", "--model", model, "--input", str(texts), "--out", str(out), "--resume"]) == 0
    assert lines(out) == printed
    assert "2 inputs kept, 4 to go" in capsys.readouterr().err


def test_index_out_writes_each_images_embedding_in_input_order(capsys, tiny_models, folder, tmp_path):
    from mmstudio.engine import Engine

    model = str(tiny_models[Task.ITM])
    out = tmp_path / "embeddings.jsonl"
    assert main(["index", "--model", model, "--batch-size", "5", "--out", str(out), str(folder)]) == 1  # broken.png
    records = [json.loads(x) for x in lines(out)]
    files = sorted(folder.iterdir())
    assert [r["image"] for r in records] == [str(f) for f in files]
    assert "error" in records[0] and all("embedding" in r for r in records[1:])
    from mmstudio.imaging import load_image

    expected = Engine().embedder(model).image_features([load_image(files[3])])[0]
    assert records[3]["embedding"] == pytest.approx(expected.tolist(), abs=1e-5)
    out.write_text("\n".join(lines(out)[:7]) + "\n", encoding="utf-8")
    assert main(["index", "--model", model, "--out", str(out), "--resume", str(folder)]) == 1
    resumed = [json.loads(x) for x in lines(out)]
    assert [r["image"] for r in resumed] == [r["image"] for r in records]
    for before, after in zip(records[1:], resumed[1:]):  # other batches: the last digit may differ
        assert after["embedding"] == pytest.approx(before["embedding"], abs=1e-5)
    capsys.readouterr()


# ------------------------------------------------------------------ torchrun


def torchrun(*args: str, scratch, processes: int = 2) -> subprocess.CompletedProcess:
    """`torchrun ... -m mmstudio ARGS`; torchrun's own log folders go to `scratch` (it leaves them behind)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "mmstudio", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(scratch)})


@pytest.mark.slow
def test_torchrun_gives_the_lines_of_one_process_in_input_order_and_resumes_parts(tiny_models, folder, tmp_path):
    model = str(tiny_models[Task.CAPTION])
    one = tmp_path / "one.jsonl"
    main(["caption", "--model", model, "--batch-size", "4", "--out", str(one), str(folder)])
    two = tmp_path / "two.jsonl"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = torchrun("caption", "--model", model, "--batch-size", "4", "--out", str(two), str(folder), scratch=scratch)
    assert done.returncode == 1, done.stderr[-2000:]  # broken.png failed: rank 0 says so for the run
    assert lines(two) == lines(one)  # the same lines, merged in input order
    assert "25 inputs merged from 2 processes" in done.stderr
    assert not list(tmp_path.glob("two.jsonl.rank*"))  # the parts are gone once merged
    # A run killed before its merge: rank 0's file and rank 1's part each hold some lines.
    expected = lines(one)
    two.write_text("\n".join(expected[0:6:2]) + "\n", encoding="utf-8")
    (tmp_path / "two.jsonl.rank1-of-2").write_text("\n".join(expected[1:8:2]) + "\n", encoding="utf-8")
    (tmp_path / "two.jsonl.rank1-of-3").write_text(expected[20] + "\n", encoding="utf-8")  # an earlier run's
    done = torchrun("caption", "--model", model, "--out", str(two), "--resume", str(folder), scratch=scratch)
    assert done.returncode == 1, done.stderr[-2000:]
    assert lines(two) == expected
    assert not list(tmp_path.glob("two.jsonl.rank*"))
    refused = torchrun("caption", "--model", model, str(folder), scratch=scratch)  # no --out: nowhere to merge
    assert refused.returncode != 0 and "under torchrun give --out" in refused.stderr

"""The `mmstudio` CLI contract: caption, ask, match, models; JSON lines; errors per input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmstudio.cli import main
from mmstudio.models.base import Task
from tests.image_corpus import make_corpus


def run(capsys, *argv) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    return code, lines, out.out + out.err


@pytest.fixture()
def scene_files(tmp_path, scene_images):
    paths = []
    for i, image in enumerate(scene_images[:3]):
        path = tmp_path / f"scene{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def test_caption_json_with_attention(capsys, tiny_models, scene_files):
    model = str(tiny_models[Task.CAPTION])
    code, lines, _ = run(capsys, "caption", "--model", model, "--json", "--attention", "--batch-size", "2",
                         *map(str, scene_files))
    assert code == 0
    assert [line["image"] for line in lines] == [str(p) for p in scene_files]
    for line in lines:
        assert set(line) == {"image", "caption", "tokens", "grid", "attention", "in_domain", "generation"}
        rows, cols = line["grid"]
        assert len(line["attention"]) == len(line["tokens"])
        assert all(len(m) == rows * cols for m in line["attention"])


def test_caption_folder_and_readable_text(capsys, tiny_models, scene_files):
    code, _, text = run(capsys, "caption", "--model", str(tiny_models[Task.CAPTION]), str(scene_files[0].parent))
    assert code == 0
    assert text.count("scene") == 3


def test_caption_goes_on_past_a_corpus_of_broken_files(capsys, tiny_models, tmp_path):
    cases = make_corpus(tmp_path / "corpus")
    files = [c for c in cases if c.path.is_file()]
    code, lines, _ = run(capsys, "caption", "--model", str(tiny_models[Task.CAPTION]), "--json",
                         *[str(c.path) for c in files])
    assert code == 1  # some inputs failed
    by_image = {line["image"]: line for line in lines}
    assert len(by_image) == len(files)
    for case in files:
        line = by_image[str(case.path)]
        if case.ok:
            assert "caption" in line, line
        else:
            assert case.path.name in line["error"]


def test_ask_positional_and_jsonl(capsys, tiny_models, scene_files, tmp_path):
    model = str(tiny_models[Task.VQA])
    code, lines, _ = run(capsys, "ask", "--model", model, "--json", str(scene_files[0]),
                         "what color is the star?", "how many objects are there?")
    assert code == 0
    assert [line["question"] for line in lines] == ["what color is the star?", "how many objects are there?"]
    fields = {"image", "question", "answer", "unknown_words", "familiar_question", "in_domain", "generation"}
    assert all(set(line) == fields for line in lines)

    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join([
        json.dumps({"image": scene_files[0].name, "question": "what color is the star?"}),
        "{broken",
        json.dumps({"image": "missing.png", "question": "how many objects are there?"}),
        json.dumps({"image": str(scene_files[1]), "question": "is there a red circle?"}),
    ]) + "\n")
    code, lines, _ = run(capsys, "ask", "--model", model, "--json", "--attention", "--input", str(requests))
    assert code == 1
    assert len(lines) == 4
    assert set(lines[0]) >= {"image", "question", "answer", "grid", "tokens", "attention"}
    assert "error" in lines[1] and "requests.jsonl:2" in lines[1]["error"]
    assert "error" in lines[2] and "file not found" in lines[2]["error"]
    assert len(lines[3]["attention"]) == len(lines[3]["tokens"])


def test_a_blank_question_or_text_on_the_command_line_is_refused_as_in_a_file(capsys, tiny_models, scene_files):
    code, lines, text = run(capsys, "ask", "--model", str(tiny_models[Task.VQA]), str(scene_files[0]), "  ")
    assert code == 2 and not lines and "the question is blank" in text
    code, lines, text = run(capsys, "match", "--model", str(tiny_models[Task.ITM]), str(scene_files[0]),
                            "a small red circle", "")
    assert code == 2 and not lines and "text 2 of 2 is blank" in text


def test_match_json(capsys, tiny_models, scene_files, tmp_path):
    model = str(tiny_models[Task.ITM])
    code, lines, _ = run(capsys, "match", "--model", model, "--json", "--attention", str(scene_files[0]),
                         "a small red circle", "a large blue star")
    assert code == 0
    assert [line["text"] for line in lines] == ["a small red circle", "a large blue star"]
    for line in lines:
        assert 0.0 <= line["itm"] <= 1.0 and -1.0 <= line["itc"] <= 1.0
        assert len(line["attention"]) == line["grid"][0] * line["grid"][1]
    requests = tmp_path / "r.jsonl"
    requests.write_text(json.dumps({"image": str(scene_files[0]), "texts": ["a red star", "a blue circle"]}) + "\n")
    code, lines, _ = run(capsys, "match", "--model", model, "--json", "--input", str(requests))
    assert code == 0 and len(lines) == 2


def test_missing_arguments_and_broken_model(capsys, tiny_models, scene_files, tmp_path):
    code, _, text = run(capsys, "ask", "--model", str(tiny_models[Task.VQA]), str(scene_files[0]))
    assert code == 2 and "at least one question" in text
    code, _, text = run(capsys, "caption", "--model", str(tmp_path / "nothing"), str(scene_files[0]))
    assert code == 2 and "no such model folder" in text


def test_models_lists_what_is_usable(capsys):
    code, lines, _ = run(capsys, "models", "--json")
    assert code == 0
    for line in lines:
        assert set(line) == {"name", "source", "path", "tasks"}


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "mmstudio", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for command in ("caption", "ask", "match", "models", "train", "eval", "world"):
        assert command in out.stdout


@pytest.mark.slow
def test_self_test_passes_on_the_built_in_models(tmp_path):
    """What the installer's check runs: every built-in model, the window offscreen, a 5-step job."""
    import os

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_DATA_HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "mmstudio", "--self-test"], capture_output=True, text=True,
                          env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "7 of 7 checks passed" in done.stdout


def test_a_mistyped_command_is_an_error_not_an_image_to_open(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["xyzzy", "photos/"]) == 2
    assert capsys.readouterr().err.startswith("mmstudio: error: no command or file 'xyzzy'; see mmstudio --help")
    assert main(["captoin", "x.png"]) == 2
    assert "did you mean 'caption'?" in capsys.readouterr().err


def test_no_display_is_one_line_not_a_core_dump(capsys, monkeypatch):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("X11/Wayland displays are a Linux matter")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("mmstudio: error: no display to open the window on")


def test_a_terminal_gets_a_progress_line_and_a_pipe_does_not(capsys, monkeypatch, tiny_models, photos):
    import sys

    argv = ["caption", "--model", str(tiny_models[Task.CAPTION]), "--batch-size", "2", str(photos)]
    assert main(argv) == 0
    piped = capsys.readouterr()
    assert "\r" not in piped.err and "images (" not in piped.err  # piped: the captions and nothing else
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    terminal = capsys.readouterr()
    assert terminal.out == piped.out  # the same lines
    assert "2/5 images (40%)" in terminal.err and "5/5 images (100%)" in terminal.err
    assert terminal.err.endswith("\r\x1b[K")  # the progress line is gone at the end
    assert main(["caption", "--json", *argv[1:]]) == 0
    assert capsys.readouterr().err == ""  # --json: nothing extra


def test_input_dash_reads_requests_from_standard_input(capsys, monkeypatch, tiny_models, scene_files):
    import io
    import sys

    rows = [{"image": str(scene_files[0]), "question": "what color is the star?"}, "{broken"]
    text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, lines, _ = run(capsys, "ask", "--model", str(tiny_models[Task.VQA]), "--json", "--input", "-")
    assert code == 1  # the broken line is reported, the good one answered
    assert lines[0]["question"] == "what color is the star?" and "answer" in lines[0]
    assert "stdin" in lines[1]["error"] or "-:2" in lines[1]["error"]


def test_out_of_the_world_pictures_carry_in_domain_in_json_and_one_warning_line_in_text(capsys, tmp_path):
    import numpy as np

    from mmstudio.models.in_domain import FILE, FLAG_BELOW
    from mmstudio.resources import builtin_models_dir
    from tests.out_of_world_images import landscape
    from tests.test_out_of_world import generator_scenes

    if not all((builtin_models_dir() / name / FILE).is_file() for name in ("caption", "vqa", "retrieval")):
        pytest.skip("the built-in models of this checkout ship no in-domain check")
    photo, scene = tmp_path / "photo.png", tmp_path / "scene.png"
    landscape(np.random.default_rng(5)).save(photo)
    generator_scenes(1, seed=4003)[0].save(scene)
    code, lines, _ = run(capsys, "caption", "--json", str(photo), str(scene))
    assert code == 0 and lines[0]["in_domain"] < FLAG_BELOW <= lines[1]["in_domain"]
    code, _, text = run(capsys, "caption", str(photo), str(scene))
    warnings = [line for line in text.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"{photo}: warning: not a Shapes World scene")
    code, _, text = run(capsys, "ask", str(photo), "how many objects are there?", "what color is the star?")
    assert code == 0 and text.count("warning: not a Shapes World scene") == 1  # once an image, not a question
    code, lines, _ = run(capsys, "match", "--json", str(photo), "a small red circle", "a large blue star")
    assert all(line["in_domain"] < FLAG_BELOW for line in lines)

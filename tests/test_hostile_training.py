"""Hostile and broken inputs to training and the CLI: damaged checkpoints, changed settings on resume,
full and read-only disks, out-of-range arguments and environment variables, file modes (issue 16)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from mmstudio.cli import main
from mmstudio.errors import MMStudioError, ModelLoadError, SettingsError, StorageError
from mmstudio.models.base import Task
from mmstudio.training.checkpoints import MANIFEST, checkpoint_problem, read_run_record
from mmstudio.training.run import TrainConfig, prepare, train
from mmstudio.world import generate_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # 5 steps an epoch: a 4-step run ends mid-epoch, where Trainer's resume would train a step past the end
    return generate_dataset(tmp_path_factory.mktemp("world") / "data", 20, seed=3, size=96)


def tiny(data, out, task=Task.CAPTION, **kw) -> TrainConfig:
    defaults = dict(base="scratch", size="tiny", steps=4, batch_size=4, save_every=2, log_every=1,
                    learning_rate=1e-3, bf16=False, threads=1)
    defaults.update(kw)
    return TrainConfig(task=task, data=data, out=out, **defaults)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, world):
    """A finished 4-step run with checkpoint-2 and checkpoint-4; tests work on copies."""
    return train(tiny(world, tmp_path_factory.mktemp("runs") / "run"), lambda e: None)


@pytest.fixture()
def run_copy(tmp_path, finished_run):
    return Path(shutil.copytree(finished_run, tmp_path / "run", symlinks=True))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


# ------------------------------------------------------------ 5. checkpoints and resume


@pytest.mark.parametrize("damage", ["model-half", "model-empty", "optimizer-half", "scheduler-half", "rng-half",
                                    "tokenizer-grown", "model-garbage-header"])
def test_a_damaged_checkpoint_is_not_complete(run_copy, damage):
    latest = run_copy / "checkpoints" / "checkpoint-4"
    assert checkpoint_problem(latest) is None
    name, how = damage.split("-", 1)
    file = latest / {"model": "model.safetensors", "optimizer": "optimizer.pt", "scheduler": "scheduler.pt",
                     "rng": "rng_state.pth", "tokenizer": "tokenizer.json"}[name]
    if how == "half":
        truncate(file)
    elif how == "empty":
        file.write_bytes(b"")
    elif how == "grown":
        file.write_bytes(file.read_bytes() + b" ")
    else:
        file.write_bytes(b"\xff" * 8 + file.read_bytes()[8:])
    problem = checkpoint_problem(latest)
    assert problem is not None and file.name in problem


def test_a_checkpoint_counts_once_its_manifest_lists_every_file(run_copy):
    for checkpoint in (run_copy / "checkpoints").iterdir():
        manifest = json.loads((checkpoint / MANIFEST).read_text())
        assert set(manifest["files"]) == {p.name for p in checkpoint.iterdir()} - {MANIFEST}
        assert manifest["settings"]["batch_size"] == 4
    # A crash between Trainer's save and the manifest: the files may be anything, and the checkpoint is not taken.
    (run_copy / "checkpoints" / "checkpoint-4" / MANIFEST).unlink()
    truncate(run_copy / "checkpoints" / "checkpoint-4" / "optimizer.pt")
    assert "optimizer.pt" in checkpoint_problem(run_copy / "checkpoints" / "checkpoint-4")


def test_resume_falls_back_from_a_truncated_latest_checkpoint(run_copy, world):
    truncate(run_copy / "checkpoints" / "checkpoint-4" / "model.safetensors")
    events = []
    train(tiny(world, run_copy, steps=6, resume=True), events.append)
    damaged = [e for e in events if e["event"] == "damaged"]
    assert len(damaged) == 1
    assert damaged[0]["message"].startswith("checkpoint-4 is damaged (model.safetensors is truncated")
    assert damaged[0]["message"].endswith("resuming from checkpoint-2")
    assert next(e for e in events if e["event"] == "resume")["step"] == 2
    assert events[-1]["event"] == "done" and events[-1]["step"] == 6 and events[-1]["finished"]
    # The damaged one was moved aside, and the checkpoint saved again at step 4 is whole.
    assert (run_copy / "checkpoints" / "damaged-checkpoint-4").is_dir()
    assert checkpoint_problem(run_copy / "checkpoints" / "checkpoint-6") is None


def test_resume_falls_back_from_a_truncated_optimizer_state_through_the_cli(run_copy, world, capsys):
    truncate(run_copy / "checkpoints" / "checkpoint-4" / "optimizer.pt")
    code = main(["train", "--task", "caption", "--data", str(world), "--out", str(run_copy), "--base", "scratch",
                 "--size", "tiny", "--steps", "6", "--batch-size", "4", "--save-every", "2", "--log-every", "1",
                 "--lr", "1e-3", "--threads", "1", "--resume"])
    out = capsys.readouterr().out
    assert code == 0
    assert "checkpoint-4 is damaged (optimizer.pt is truncated" in out and "resuming from checkpoint-2" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("change, setting", [
    (dict(lora=True), "lora"),
    (dict(batch_size=2), "batch_size"),
    (dict(learning_rate=5e-4), "learning_rate"),
    (dict(task=Task.VQA), "task"),
    (dict(size="small"), "size"),
    (dict(seed=1), "seed"),
    ("new word", "words"),
])
def test_resume_with_changed_settings_is_refused_naming_the_setting(run_copy, world, tmp_path, change, setting):
    if change == "new word":  # what Correct & teach does: a caption with a word the run never saw
        data = Path(shutil.copytree(world, tmp_path / "taught"))
        rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
        rows[0]["caption"] += " wobbly"
        (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        config = tiny(data, run_copy, resume=True)
    else:
        config = tiny(world, run_copy, resume=True, **change)
    with pytest.raises(SettingsError) as info:
        prepare(config)
    message = str(info.value)
    assert info.value.name == setting and "cannot resume" in message and "checkpoint-4" in message
    assert ("wobbly" in message) if setting == "words" else (f"{setting} was" in message)


def test_resume_may_change_steps_logging_saving_and_time(run_copy, world):
    job = prepare(tiny(world, run_copy, resume=True, steps=8, log_every=2, save_every=3, max_minutes=5.0,
                       eval_every=0, threads=None))
    assert job.resume_from.name == "checkpoint-4"


def test_resume_with_lora_added_is_one_line_from_the_cli(run_copy, world, capsys):
    code = main(["train", "--task", "caption", "--data", str(world), "--out", str(run_copy), "--base", "scratch",
                 "--size", "tiny", "--steps", "4", "--batch-size", "4", "--lr", "1e-3", "--lora", "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mmstudio: error: cannot resume") and "lora was False, now True" in err
    assert len(err.strip().splitlines()) == 1


def test_resuming_a_finished_run_trains_no_extra_step(run_copy, world):
    record = read_run_record(run_copy)
    events = []
    train(tiny(world, run_copy, resume=True), events.append)
    assert not [e for e in events if e["event"] == "progress"]
    assert events[-1]["event"] == "done" and events[-1]["step"] == 4 and events[-1]["already_finished"]
    assert read_run_record(run_copy) == record


def test_a_finished_run_whose_final_save_was_cut_publishes_its_last_checkpoint(run_copy, world):
    (run_copy / "model.safetensors").unlink()
    (run_copy / "mmstudio.json").unlink()
    events = []
    train(tiny(world, run_copy, resume=True), events.append)
    assert not [e for e in events if e["event"] == "progress"]
    assert events[-1]["step"] == 4 and events[-1]["finished"]
    assert (run_copy / "model.safetensors").is_file() and read_run_record(run_copy)["steps"] == 4


# ------------------------------------------------------------ 6. full and read-only disks


@contextmanager
def mounted_tmpfs(folder: Path, size: str, read_only: bool = False):
    """A small tmpfs at `folder` (root only); skips the test where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) to make a small or read-only disk")
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_out_that_is_a_file_fails_before_the_model_is_built(tmp_path, world):
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0\n")
    for out, words in ((file, "is a file, not a folder"), (file / "run", "is a file, not a folder")):
        with pytest.raises(StorageError, match=words):
            prepare(tiny(world, out))
        with pytest.raises(StorageError, match=words):
            prepare(tiny(world, out, resume=True))


def test_out_that_is_a_file_is_one_line_from_the_cli(tmp_path, world, capsys):
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0\n")
    code = main(["train", "--task", "caption", "--data", str(world), "--out", str(file), "--base", "scratch",
                 "--size", "tiny", "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"mmstudio: error: the output folder {file} is a file, not a folder; choose a folder\n"


def test_read_only_out_and_working_folder_fail_before_training(tmp_path, world, monkeypatch, capsys):
    with mounted_tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        with pytest.raises(StorageError, match="read-only"):
            prepare(tiny(world, ro / "run"))
        monkeypatch.chdir(ro)  # a relative --out in a read-only working folder
        with pytest.raises(StorageError, match="read-only"):
            prepare(tiny(world, Path("run")))
        code = main(["world", "generate", "--out", str(ro / "data"), "--count", "2"])
        err = capsys.readouterr().err
        assert code == 2 and "read-only" in err and len(err.strip().splitlines()) == 1
        monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("size, writer", [("128k", "safetensors"), ("560k", "torch")])
def test_a_full_disk_while_saving_says_no_space(tmp_path, world, size, writer):
    # 128 KB: the weights (224 KB) do not fit; 560 KB: they do, then torch's writer fails on optimizer.pt.
    with mounted_tmpfs(tmp_path / "small", size) as small:
        events = []
        with pytest.raises(StorageError) as info:
            train(tiny(world, small / "run", steps=2, save_every=1), events.append)
        message = str(info.value)
        assert "no space left on the disk" in message and "checkpoint-1" in message
        assert "unexpected pos" not in message and "enforce fail" not in message


def test_a_full_disk_is_one_line_from_the_cli(tmp_path, world, capsys):
    with mounted_tmpfs(tmp_path / "small", "560k") as small:
        code = main(["train", "--task", "caption", "--data", str(world), "--out", str(small / "run"),
                     "--base", "scratch", "--size", "tiny", "--steps", "2", "--save-every", "1",
                     "--batch-size", "4", "--threads", "1"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("mmstudio: error: cannot save the checkpoint")
        assert "no space left on the disk" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------ 7. arguments and environment


TRAIN = ["train", "--task", "caption", "--data", "d", "--out", "o"]
BAD_ARGUMENTS = [
    (TRAIN + ["--batch-size", "0"], "train", "--batch-size", "must be a positive integer, got 0"),
    (TRAIN + ["--lr", "nan"], "train", "--lr", "must be a finite number above 0, got nan"),
    (TRAIN + ["--lr", "inf"], "train", "--lr", "must be a finite number above 0"),
    (TRAIN + ["--lr", "-0.5"], "train", "--lr", "must be a finite number above 0"),
    (TRAIN + ["--log-every", "0"], "train", "--log-every", "must be a positive integer, got 0"),
    (TRAIN + ["--lora-rank", "0"], "train", "--lora-rank", "must be a positive integer, got 0"),
    (TRAIN + ["--steps", "-5"], "train", "--steps", "must be a positive integer, got -5"),
    (TRAIN + ["--epochs", "0"], "train", "--epochs", "must be a finite number above 0"),
    (TRAIN + ["--warmup", "1.5"], "train", "--warmup", "from 0 up to"),
    (TRAIN + ["--seed", "-1"], "train", "--seed", "must be an integer from 0"),
    (TRAIN + ["--save-every", "0"], "train", "--save-every", "must be a positive integer"),
    (TRAIN + ["--eval-every", "-1"], "train", "--eval-every", "of 0 or more"),
    (TRAIN + ["--eval-samples", "0"], "train", "--eval-samples", "must be a positive integer"),
    (TRAIN + ["--max-minutes", "-1"], "train", "--max-minutes", "of 0 or more"),
    (TRAIN + ["--threads", "0"], "train", "--threads", "must be a positive integer"),
    (TRAIN + ["--batch-size", "many"], "train", "--batch-size", "must be an integer, got 'many'"),
    (["train", "--task", "caption", "--data", "", "--out", "o"], "train", "--data", "must not be empty"),
    (["train", "--task", "caption", "--data", "d", "--out", ""], "train", "--out", "must not be empty"),
    (["eval", "--task", "caption", "--data", "d", "--batch-size", "0"], "eval", "--batch-size", "positive"),
    (["eval", "--task", "caption", "--data", "d", "--limit", "-3"], "eval", "--limit", "positive"),
    (["eval", "--task", "caption", "--data", "d", "--device", "mpsfoo"], "eval", "--device", "unknown device"),
    (["world", "generate", "--out", "w", "--count", "0"], "world generate", "--count", "positive"),
    (["world", "generate", "--out", "w", "--count", "2", "--workers", "0"], "world generate", "--workers",
     "positive"),
    (["world", "generate", "--out", "w", "--count", "2", "--size", "5"], "world generate", "--size", "from 48"),
    (["world", "generate", "--out", "", "--count", "2"], "world generate", "--out", "must not be empty"),
    (["caption", "--batch-size", "0", "x.png"], "caption", "--batch-size", "must be a positive integer"),
    (["caption", ""], "caption", "PATH", "must not be empty"),
    (["caption", "--device", "cuda:x", "x.png"], "caption", "--device", "unknown device 'cuda:x'"),
    (["search", "--index", "", "circle"], "search", "--index", "must not be empty"),
    (["search", "--index", "f", "--top", "0", "circle"], "search", "--top", "must be a positive integer"),
    (["ask", "", "what?"], "ask", "IMAGE", "must not be empty"),
    (["recipe", "--out", "o", "--work", "w", "--scale", "0"], "recipe", "--scale", "above 0"),
    (["recipe", "--out", "o", "--work", "w", "--train-scenes", "0"], "recipe", "--train-scenes", "positive"),
]


@pytest.mark.parametrize("argv, command, flag, words", BAD_ARGUMENTS,
                         ids=[f"{command} {flag} {argv[argv.index(flag) + 1] if flag in argv else ''}"
                              for argv, command, flag, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_argparse_errors(capsys, argv, command, flag, words):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"mmstudio {command}: error: argument {flag}: ") and words in last, last


def test_the_argparse_message_reads_as_the_issue_asks(capsys):
    with pytest.raises(SystemExit):
        main(TRAIN + ["--batch-size", "0"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "mmstudio train: error: argument --batch-size: must be a positive integer, got 0"


@pytest.mark.parametrize("variable, value, words", [
    ("MMSTUDIO_DEVICE", "mpsfoo", "$MMSTUDIO_DEVICE: unknown device 'mpsfoo'"),
    ("MMSTUDIO_DEVICE", "cuda:", "$MMSTUDIO_DEVICE: unknown device 'cuda:'"),
    ("MMSTUDIO_DTYPE", "fp8", "$MMSTUDIO_DTYPE: unknown dtype 'fp8'"),
])
def test_bad_environment_is_one_line_from_the_cli_and_the_app(capsys, monkeypatch, tiny_models, photos,
                                                             variable, value, words):
    monkeypatch.setenv(variable, value)
    assert main(["caption", "--model", str(tiny_models[Task.CAPTION]), str(photos)]) == 2
    assert capsys.readouterr().err == f"mmstudio: error: {words}; use " + \
        ("auto, cpu, cuda, cuda:N or mps\n" if variable == "MMSTUDIO_DEVICE" else "fp32, fp16, bf16, int8\n")
    assert main([]) == 2  # the app: the same line, before any window
    assert words in capsys.readouterr().err


def test_an_unknown_device_reaching_the_loader_is_a_model_load_error():
    from mmstudio.models.loading import pick_device

    for name in ("mpsfoo", "cuda:x", "cpu0", ""):
        with pytest.raises(ModelLoadError, match="unknown device"):
            pick_device(name)


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0), ("batch_size", True), ("batch_size", 2.5), ("learning_rate", math.nan),
    ("learning_rate", 0.0), ("log_every", 0), ("lora_rank", 0), ("steps", -5), ("epochs", math.inf),
    ("warmup_ratio", 1.0), ("seed", -1), ("order_share", 2.0), ("negatives_per_image", -1), ("rows", 0),
    ("max_minutes", -1.0), ("threads", 0), ("save_every", 0), ("eval_samples", 0), ("data", ""), ("out", ""),
    ("size", "huge"), ("task", "poetry"), ("lora", "yes"),
])
def test_train_config_is_checked_field_by_field(tmp_path, world, field, value):
    paths = {"data": world, "out": tmp_path / "run"}
    config = tiny(**{**paths, field: value}) if field in paths else tiny(world, tmp_path / "run", **{field: value})
    with pytest.raises(SettingsError) as info:
        prepare(config)  # what the app calls: the same checks as the CLI's flags
    assert info.value.name == field and str(info.value).startswith(field + " ")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------ 9. file modes


def test_every_file_a_run_writes_has_the_ordinary_mode(finished_run):
    umask = os.umask(0)
    os.umask(umask)
    wanted = 0o666 & ~umask
    modes = {str(p.relative_to(finished_run)): p.stat().st_mode & 0o777 for p in finished_run.rglob("*")
             if p.is_file()}
    assert "model.safetensors" in modes and "checkpoints/checkpoint-4/model.safetensors" in modes
    assert {name: oct(mode) for name, mode in modes.items() if mode != wanted} == {}


def test_files_follow_the_umask(tmp_path, world):
    previous = os.umask(0o027)
    try:
        out = train(tiny(world, tmp_path / "run", steps=1, save_every=1), lambda e: None)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o640}, modes


def test_a_generic_mmstudio_error_still_reads_as_one_line(capsys, tmp_path, world):
    out = tmp_path / "used"
    out.mkdir()
    (out / "x").write_text("x")
    code = main(["train", "--task", "caption", "--data", str(world), "--out", str(out), "--base", "scratch"])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert issubclass(StorageError, MMStudioError) and issubclass(SettingsError, MMStudioError)

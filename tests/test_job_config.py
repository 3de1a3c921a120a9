"""Job settings are data (issue 17.1): TrainConfig and GenerateConfig as versioned JSON documents,
`--config FILE` for `mmstudio train` and `mmstudio world generate`, the flags building the same configs."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import ClassVar

import pytest

from mmstudio import documents
from mmstudio.cli import build_parser, main
from mmstudio.cli.train import config_from_args
from mmstudio.errors import MMStudioError, SettingsError
from mmstudio.models.base import Task
from mmstudio.storage import file_mode
from mmstudio.training.config import TrainConfig
from mmstudio.world import EXTRA_SHAPES, SHAPES, generate_dataset
from mmstudio.world.config import GenerateConfig
from tests.train_configs import as_flags, changed_fields, every_field_changed


def document(**changes) -> dict:
    base = TrainConfig(task=Task.CAPTION, data=Path("data"), out=Path("out")).to_document()
    base.update(changes)
    return base


def test_the_table_covers_every_field(tmp_path):
    """A new TrainConfig field fails here until tests/train_configs.py gives it a value away from its default."""
    assert changed_fields(every_field_changed(tmp_path)) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_every_train_config_field_round_trips_through_json(tmp_path):
    config = every_field_changed(tmp_path)
    doc = config.to_document()
    assert doc["kind"] == "train" and doc["version"] == TrainConfig.VERSION
    assert set(doc) - {"kind", "version"} == {f.name for f in dataclasses.fields(TrainConfig)}
    assert doc["task"] == "vqa" and doc["data"] == str(tmp_path / "data")  # values, not reprs
    assert TrainConfig.from_document(json.loads(json.dumps(doc))) == config
    for f in dataclasses.fields(TrainConfig):  # each field alone too: none depends on another being set
        alone = TrainConfig(task=Task.CAPTION, data=Path("d"), out=Path("o"), **(
            {f.name: getattr(config, f.name)} if f.name not in ("task", "data", "out") else {}))
        assert TrainConfig.from_document(json.loads(json.dumps(alone.to_document()))) == alone, f.name


def test_a_config_file_is_written_atomically_with_the_ordinary_mode(tmp_path):
    config = every_field_changed(tmp_path)
    path = config.write(tmp_path / "new-folder" / "run.json")
    assert TrainConfig.read(path) == config
    assert os.stat(path).st_mode & 0o777 == file_mode()
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temporary file left behind


def test_a_short_hand_written_config_takes_the_defaults():
    config = TrainConfig.from_document({"kind": "train", "version": 1, "task": "itm", "data": "d", "out": "o",
                                        "epochs": 2})
    assert config == TrainConfig(task=Task.ITM, data=Path("d"), out=Path("o"), epochs=2.0)


@pytest.mark.parametrize("doc, name, words", [
    (document(version=2), "version", "newer than this mmstudio reads"),
    (document(learning_rat=1e-3), "learning_rat", "is not a setting of a train config"),
    ({"kind": "train", "version": 1, "task": "caption", "data": "d"}, "out", "is required"),
    (document(batch_size="32"), "batch_size", "must be an integer, got '32'"),
    (document(batch_size=True), "batch_size", "must be an integer, got True"),
    (document(lora="yes"), "lora", "must be true or false"),
    (document(data=7), "data", "must be a string"),
    (document(task="segment"), "task", "must be one of caption, vqa, itm"),
    (document(steps=0), "steps", "must be a positive integer, got 0"),  # validate() runs on load
    (document(order_share=1.5), "order_share", "from 0 to 1"),
    (document(epochs=None), "epochs", "must be set, got null"),
    (document(kind="generate"), "kind", "must be 'train'"),
    ({"task": "caption", "data": "d", "out": "o"}, "kind", "must be 'train', got None"),
    (document(version="1"), "version", "must be an integer"),
    (document(version=0), "version", "not read any more"),
    (["train"], "kind", "must be a JSON object"),
])
def test_a_bad_document_is_refused_naming_the_field(doc, name, words):
    with pytest.raises(SettingsError) as info:
        TrainConfig.from_document(doc)
    assert info.value.name == name and words in str(info.value), str(info.value)


def test_a_bad_config_file_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(document(version=3, weight_decay=0.1)))
    with pytest.raises(SettingsError) as info:
        TrainConfig.read(path)
    assert info.value.name == "version" and str(info.value).startswith(f"{path}: version is 3")
    path.write_text("{not json")
    with pytest.raises(MMStudioError, match="not a JSON config"):
        TrainConfig.read(path)
    with pytest.raises(MMStudioError, match="cannot read the config"):
        TrainConfig.read(tmp_path / "missing.json")


@dataclasses.dataclass(frozen=True)
class Renamed:
    """A config whose version 2 renamed `rate` to `learning_rate`: the upgrade hook reads version 1 files."""

    KIND: ClassVar[str] = "renamed"
    VERSION: ClassVar[int] = 2
    UPGRADES: ClassVar[dict] = {1: lambda doc: {**{k: v for k, v in doc.items() if k != "rate"},
                                                "learning_rate": doc["rate"]}}
    learning_rate: float
    steps: int = 10

    def validate(self) -> None:
        pass


def test_an_older_version_is_upgraded_on_load():
    assert documents.from_document(Renamed, {"kind": "renamed", "version": 1, "rate": 0.5}) == Renamed(0.5)
    assert documents.from_document(Renamed, {"kind": "renamed", "version": 2, "learning_rate": 0.5}) == Renamed(0.5)
    with pytest.raises(SettingsError, match="rate is not a setting"):  # a version-2 file with the old name
        documents.from_document(Renamed, {"kind": "renamed", "version": 2, "rate": 0.5})
    with pytest.raises(SettingsError, match="newer"):
        documents.from_document(Renamed, {"kind": "renamed", "version": 3, "learning_rate": 0.5})


# ----------------------------------------------------------------- the CLI


def parse(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(argv))


def test_every_field_has_a_flag_and_flags_build_the_same_config(tmp_path):
    config = every_field_changed(tmp_path)
    assert parse(as_flags(config)) == config
    config.write(tmp_path / "run.json")
    assert parse(["train", "--config", str(tmp_path / "run.json")]) == config


def test_flags_given_with_config_replace_those_fields(tmp_path):
    config = every_field_changed(tmp_path)
    config.write(tmp_path / "run.json")
    got = parse(["train", "--config", str(tmp_path / "run.json"), "--steps", "900", "--no-resume", "--bf16",
                 "--out", str(tmp_path / "elsewhere")])
    assert got == dataclasses.replace(config, steps=900, resume=False, bf16=True, out=tmp_path / "elsewhere")


def test_without_config_task_data_and_out_are_required(capsys):
    assert main(["train", "--task", "caption", "--data", "d"]) == 2
    assert "required: --out (or --config FILE)" in capsys.readouterr().err


def test_a_bad_config_file_is_an_error_event_for_the_app(capsys, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(document(batch_size=0)))
    assert main(["train", "--config", str(tmp_path / "run.json"), "--progress", "json"]) == 2
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert event["event"] == "error" and "batch_size must be a positive integer, got 0" in event["message"]


def test_train_from_a_config_file_gives_the_same_checkpoint_as_the_same_flags(capsys, tmp_path):
    import torch
    from safetensors.torch import load_file

    data = generate_dataset(tmp_path / "data", 12, seed=4, size=96)
    flags = ["--task", "caption", "--data", str(data), "--base", "scratch", "--size", "tiny", "--steps", "3",
             "--batch-size", "4", "--lr", "0.001", "--weight-decay", "0.01", "--seed", "7", "--save-every", "2",
             "--log-every", "1", "--threads", "1", "--no-bf16", "--rows", "10"]
    assert main(["train", *flags, "--out", str(tmp_path / "by-flags"), "--progress", "json"]) == 0
    config = parse(["train", *flags, "--out", str(tmp_path / "by-config")])
    config.write(tmp_path / "run.json")
    assert main(["train", "--config", str(tmp_path / "run.json"), "--progress", "json"]) == 0
    capsys.readouterr()
    files = sorted(p.name for p in (tmp_path / "by-flags").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (tmp_path / "by-config").glob("*.safetensors"))
    for name in files:
        a, b = load_file(tmp_path / "by-flags" / name), load_file(tmp_path / "by-config" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    records = [json.loads((tmp_path / run / "mmstudio.json").read_text())["config"]
               for run in ("by-flags", "by-config")]
    assert {k: v for k, v in records[0].items() if k != "out"} == {k: v for k, v in records[1].items() if k != "out"}


# ---------------------------------------------------------- world generate


def test_generate_config_round_trips_and_refuses_bad_settings(tmp_path):
    config = GenerateConfig(out=tmp_path / "w", count=5, seed=3, size=64, shapes=SHAPES + EXTRA_SHAPES,
                            colors=("red", "pink"), workers=2)
    changed = {f.name for f in dataclasses.fields(GenerateConfig)
               if getattr(config, f.name) != getattr(GenerateConfig(out=Path("o"), count=1), f.name)}
    assert changed == {f.name for f in dataclasses.fields(GenerateConfig)}
    assert GenerateConfig.from_document(json.loads(json.dumps(config.to_document()))) == config
    for changes, name in (({"shapes": ["circle", "blob"]}, "shapes"), ({"count": 0}, "count"),
                          ({"size": 5}, "size"), ({"colors": []}, "colors"), ({"speed": 1}, "speed"),
                          ({"version": 9}, "version")):
        with pytest.raises(SettingsError) as info:
            GenerateConfig.from_document({**config.to_document(), **changes})
        assert info.value.name == name


def test_world_generate_from_a_config_file_writes_what_the_flags_write(tmp_path):
    flags = ["--count", "3", "--seed", "5", "--size", "64", "--shapes", "circle,hexagon"]
    assert main(["world", "generate", "--out", str(tmp_path / "by-flags"), *flags]) == 0
    GenerateConfig(out=tmp_path / "by-config", count=3, seed=5, size=64, shapes=("circle", "hexagon")).write(
        tmp_path / "gen.json")
    assert main(["world", "generate", "--config", str(tmp_path / "gen.json")]) == 0
    for name in ("metadata.jsonl", "images/000002.png"):
        assert (tmp_path / "by-flags" / name).read_bytes() == (tmp_path / "by-config" / name).read_bytes()


# ---------------------------------------------------------------- eval


def test_eval_config_round_trips_and_the_flags_build_the_same_config(tmp_path, tiny_models):
    from mmstudio.cli.evaluate import config_from_args as eval_config
    from mmstudio.training.config import EvalConfig

    config = EvalConfig(task=Task.VQA, data=tmp_path / "data", model=str(tiny_models[Task.VQA]), limit=3,
                        attention=False, batch_size=8, device="cpu", dtype="fp32")
    assert {f.name for f in dataclasses.fields(EvalConfig)} == {
        name for name in config.to_document() if name not in ("kind", "version")}
    assert EvalConfig.from_document(json.loads(json.dumps(config.to_document()))) == config
    flags = ["eval", "--task", "vqa", "--data", str(tmp_path / "data"), "--model", str(tiny_models[Task.VQA]),
             "--limit", "3", "--no-attention", "--batch-size", "8", "--device", "cpu", "--dtype", "fp32"]
    assert eval_config(build_parser().parse_args(flags)) == config
    saved = config.write(tmp_path / "eval.json")
    assert eval_config(build_parser().parse_args(["eval", "--config", str(saved)])) == config
    assert eval_config(build_parser().parse_args(["eval", "--config", str(saved), "--limit", "5"])).limit == 5
    with pytest.raises(SettingsError, match="--data"):
        eval_config(build_parser().parse_args(["eval", "--task", "vqa"]))
    with pytest.raises(SettingsError, match="batch_size"):
        EvalConfig.from_document({**config.to_document(), "batch_size": 0})


def test_eval_from_a_config_file_prints_what_the_flags_print(tmp_path, capsys, tiny_models):
    from mmstudio.training.config import EvalConfig

    data = generate_dataset(tmp_path / "data", 4, seed=5, size=64)
    flags = ["eval", "--json", "--task", "caption", "--data", str(data), "--model", str(tiny_models[Task.CAPTION]),
             "--no-attention", "--device", "cpu"]
    assert main(flags) == 0
    by_flags = json.loads(capsys.readouterr().out)
    file = EvalConfig(task=Task.CAPTION, data=data, model=str(tiny_models[Task.CAPTION]), attention=False,
                      device="cpu").write(tmp_path / "eval.json")
    assert main(["eval", "--json", "--config", str(file)]) == 0
    assert json.loads(capsys.readouterr().out) == by_flags

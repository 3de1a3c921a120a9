"""Hostile and broken model folders (issue 16): their own code, missing weights, absurd configs, a bad HF
cache, bad hints. Each must end in a normal load or one clear ModelLoadError, never a traceback or garbage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmstudio.cli import main
from mmstudio.errors import ModelLoadError
from mmstudio.models.base import LoadOptions, Task

CPU = LoadOptions(device="cpu", dtype="fp32")
FAMILY_OF_TASK = {"caption": Task.CAPTION, "vqa": Task.VQA, "itm": Task.ITM}


@pytest.fixture(scope="module")
def sources(tiny_models, family_models) -> dict[str, Path]:
    """A tiny checkpoint of every family and head, by name."""
    return {**{task.value: path for task, path in tiny_models.items()}, **family_models}


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(file: Path, change) -> None:
    data = json.loads(file.read_text()) if file.exists() else {}
    change(data)
    file.write_text(json.dumps(data))


def load(folder, options: LoadOptions = CPU):
    from mmstudio.models.registry import load_adapter

    return load_adapter(folder, options)


# ------------------------------------------------------------ 1. a folder's own code


EVIL_CODE = """from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
class Evil:
    pass
EvilConfig = EvilModel = EvilTokenizer = EvilImageProcessor = EvilProcessor = Evil
"""
COMPONENTS = ("config", "model", "tokenizer", "image_processor", "processor")


def evil_folder(source: Path, folder: Path, component: str) -> tuple[Path, Path]:
    """A copy of `source` whose `component` is, by its JSON, a class in the folder's own evil.py.

    The standard class names are removed as well, so transformers has nothing of its own to fall back on.
    """
    copy_model(source, folder)
    marker = folder.parent / f"{folder.name}.RAN"
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)))

    def point(entry: dict, auto: dict) -> None:
        entry["auto_map"] = auto
        for key in ("tokenizer_class", "image_processor_type", "processor_class"):
            entry.pop(key, None)

    if component == "config":
        edit_json(folder / "config.json", lambda c: point(c, {"AutoConfig": "evil.EvilConfig"}))
    elif component == "model":
        edit_json(folder / "config.json", lambda c: point(c, {"AutoModel": "evil.EvilModel",
                                                              "AutoModelForVision2Seq": "evil.EvilModel"}))
    elif component == "tokenizer":
        edit_json(folder / "tokenizer_config.json",
                  lambda c: point(c, {"AutoTokenizer": ["evil.EvilTokenizer", None]}))
    elif component == "image_processor":
        if (folder / "preprocessor_config.json").exists():
            edit_json(folder / "preprocessor_config.json",
                      lambda c: point(c, {"AutoImageProcessor": "evil.EvilImageProcessor"}))
        else:
            edit_json(folder / "processor_config.json",
                      lambda c: point(c.setdefault("image_processor", {}),
                                      {"AutoImageProcessor": "evil.EvilImageProcessor"}))
    else:
        edit_json(folder / "processor_config.json", lambda c: point(c, {"AutoProcessor": "evil.EvilProcessor"}))
    return folder, marker


LOAD_EACH = """
import json, sys
from mmstudio.errors import MMStudioError
from mmstudio.models.base import LoadOptions
from mmstudio.models.registry import load_adapter
for folder in sys.argv[1:]:
    try:
        load_adapter(folder, LoadOptions(device="cpu", dtype="fp32"))
        print(json.dumps({"folder": folder, "ok": True}), flush=True)
    except MMStudioError as exc:
        print(json.dumps({"folder": folder, "error": str(exc)}), flush=True)
    except Exception as exc:
        print(json.dumps({"folder": folder, "crash": repr(exc)}), flush=True)
"""


@pytest.mark.slow
def test_a_model_folders_own_code_never_runs_even_with_yes_on_stdin(sources, tmp_path, photos):
    folders, markers = [], []
    for family, source in sources.items():
        for component in COMPONENTS:
            folder, marker = evil_folder(source, tmp_path / f"{family}-{component}", component)
            folders.append(str(folder))
            markers.append(marker)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    done = subprocess.run([sys.executable, "-c", LOAD_EACH, *folders], input="y\n" * 100, capture_output=True,
                          text=True, env=env, timeout=600)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [row["folder"] for row in rows] == folders, done.stderr[-2000:]
    assert "Do you wish to run the custom code" not in done.stdout + done.stderr
    assert [m.name for m in markers if m.exists()] == []
    for row in rows:
        assert "crash" not in row, row
        if "error" in row:
            assert row["folder"] in row["error"] and "\n" not in row["error"], row
            assert "code" in row["error"], row
    # The command line a user types: the custom-code question is never asked, the answer "y" never read.
    folder, marker = Path(folders[[f.endswith("vit-gpt2-tokenizer") for f in folders].index(True)]), None
    marker = markers[folders.index(str(folder))]
    cli = subprocess.run([sys.executable, "-m", "mmstudio", "caption", "--model", str(folder),
                          str(photos / "scene0.png")], input="y\n", capture_output=True, text=True, env=env,
                         timeout=300)
    assert not marker.exists()
    assert cli.returncode in (0, 2), cli.stderr[-2000:]
    if cli.returncode == 2:
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mmstudio: error: ") and str(folder) in lines[0], lines


# --------------------------------------------------------- 2. missing weights


def _rewrite_weights(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    file = folder / "model.safetensors"
    state = change(load_file(str(file)))
    save_file(state, str(file), metadata={"format": "pt"})


def one_unrelated_tensor(state):
    import torch

    return {"unrelated.weight": torch.zeros(3, 3)}


def without(prefix):
    def change(state):
        return {k: v for k, v in state.items() if not k.startswith(prefix)}

    return change


def with_an_extra_tensor(state):
    import torch

    return {**state, "text_decoder.surplus.weight": torch.zeros(2, 2)}


def more_text_layers(folder: Path) -> None:
    edit_json(folder / "config.json",
              lambda c: c["text_config"].update(num_hidden_layers=c["text_config"]["num_hidden_layers"] + 2))


BROKEN_WEIGHTS = {
    "caption-one-unrelated-tensor": ("caption", lambda f: _rewrite_weights(f, one_unrelated_tensor)),
    "caption-no-decoder": ("caption", lambda f: _rewrite_weights(f, without("text_decoder."))),
    "caption-more-layers-than-weights": ("caption", more_text_layers),
    "vqa-surplus-tensor": ("vqa", lambda f: _rewrite_weights(f, with_an_extra_tensor)),
    "itm-no-vision": ("itm", lambda f: _rewrite_weights(f, without("vision_model."))),
    "vit-gpt2-no-decoder": ("vit-gpt2", lambda f: _rewrite_weights(f, without("decoder."))),
    "vilt-no-classifier": ("vilt", lambda f: _rewrite_weights(f, without("classifier."))),
    "clip-no-text-projection": ("clip", lambda f: _rewrite_weights(f, without("text_projection."))),
}


@pytest.mark.parametrize("case", sorted(BROKEN_WEIGHTS))
def test_weights_that_do_not_match_the_config_are_refused_unless_allowed(sources, tmp_path, case):
    family, breaking = BROKEN_WEIGHTS[case]
    folder = copy_model(sources[family], tmp_path / case)
    breaking(folder)
    with pytest.raises(ModelLoadError) as caught:
        load(folder)
    message = str(caught.value)
    assert str(folder) in message and ("missing" in message or "unexpected" in message)
    assert "--allow-missing-weights" in message and "\n" not in message
    adapter = load(folder, LoadOptions(device="cpu", dtype="fp32", strict=False))  # the user said so
    assert adapter.info.family


def test_the_cli_refuses_missing_weights_and_allows_them_on_request(capsys, sources, tmp_path, photos):
    folder = copy_model(sources["caption"], tmp_path / "m")
    _rewrite_weights(folder, without("text_decoder."))
    image = str(photos / "scene0.png")
    assert main(["caption", "--model", str(folder), "--device", "cpu", image]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmstudio: error: ") and "text_decoder." in err[0]
    assert main(["caption", "--model", str(folder), "--device", "cpu", "--allow-missing-weights", image]) == 0


def _job(tmp_path, task: Task, base: Path, **extra):
    from mmstudio.training.run import PreparedJob, TrainConfig

    config = TrainConfig(task=task, data=tmp_path, out=tmp_path / "out", base=str(base), **extra)
    return PreparedJob(config, dataset=None, base_description="")


def test_a_training_base_with_missing_weights_is_refused(sources, tmp_path):
    from mmstudio.training.run import build_start_model

    folder = copy_model(sources["caption"], tmp_path / "caption")
    _rewrite_weights(folder, without("text_decoder.bert.encoder.layer.1."))
    with pytest.raises(ModelLoadError, match="missing"):
        build_start_model(_job(tmp_path, Task.CAPTION, folder))  # same head: every tensor must be there
    model, _, _ = build_start_model(_job(tmp_path, Task.CAPTION, folder, allow_missing_weights=True))
    assert type(model).__name__ == "BlipForConditionalGeneration"
    # Another head is a deliberately partial warm start, but the vision encoder must come whole.
    model, _, note = build_start_model(_job(tmp_path, Task.ITM, folder))
    assert "taken from" in note
    _rewrite_weights(folder, without("vision_model.encoder.layers.0."))
    with pytest.raises(ModelLoadError, match="vision encoder"):
        build_start_model(_job(tmp_path, Task.ITM, folder))
    model, _, _ = build_start_model(_job(tmp_path, Task.ITM, folder, allow_missing_weights=True))
    assert type(model).__name__ == "BlipForImageTextRetrieval"


# ---------------------------------------------------- 3. memory, size and depth


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _set_text(key, value):
    return lambda c: c["text_config"].__setitem__(key, value)


CONFIG_ABUSE = {
    "2000-text-layers": (_set_text("num_hidden_layers", 2000), "layers"),
    "10**4-vision-layers": (lambda c: c["vision_config"].__setitem__("num_hidden_layers", 10**4), "layers"),
    "a-vocabulary-of-10**12": (_set_text("vocab_size", 10**12), "GB available"),
    "nested-100000-deep": (lambda c: c.__setitem__("junk", _nested(100_000)), "nested"),
    "nested-200-deep": (lambda c: c.__setitem__("junk", _nested(200)), "nested"),
    "a-20-MB-config": (lambda c: c.__setitem__("junk", "x" * 20_000_000), "MB"),
}


def _write_config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    text = json.dumps(config) if "junk" not in config or not isinstance(config["junk"], dict) else None
    if text is None:  # json.dumps itself recurses: write the deep value by hand
        depth = 0
        node = config["junk"]
        while isinstance(node, dict):
            depth, node = depth + 1, node["a"]
        config["junk"] = 0
        text = json.dumps(config)[:-1] + ', "deep": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    (folder / "config.json").write_text(text)


@pytest.mark.parametrize("case", sorted(CONFIG_ABUSE))
def test_an_absurd_config_is_refused_before_anything_is_allocated(sources, tmp_path, case):
    change, expected = CONFIG_ABUSE[case]
    folder = copy_model(sources["caption"], tmp_path / "m")
    _write_config(folder, change)
    with pytest.raises(ModelLoadError) as caught:
        load(folder)
    assert expected in str(caught.value) and str(folder) in str(caught.value)


def test_an_absurd_training_base_is_refused_before_anything_is_allocated(sources, tmp_path):
    from mmstudio.training.run import build_start_model

    folder = copy_model(sources["caption"], tmp_path / "caption")
    _write_config(folder, _set_text("vocab_size", 10**12))
    for task in (Task.CAPTION, Task.ITM):  # fine-tuning, and a warm start of another head
        with pytest.raises(ModelLoadError, match="GB available"):
            build_start_model(_job(tmp_path, task, folder, allow_missing_weights=True))


# --------------------------------------------------------------- 4. the cache


BAD_ARCHITECTURES = ["BlipForConditionalGeneration", [{"a": 1}], None, 5, ["X", 3, None, ["Y"]], {"a": 1},
                     "CLIPModel", "VisionEncoderDecoderModel", [["BlipForConditionalGeneration"]], True]


@pytest.mark.parametrize("archs", BAD_ARCHITECTURES, ids=repr)
@pytest.mark.parametrize("model_type", ["blip", "clip", "vilt", "vision-encoder-decoder", "llama", None, 7])
def test_any_architectures_value_is_judged_without_a_type_error(archs, model_type):
    from mmstudio.models import registry

    config = {"model_type": model_type, "architectures": archs}
    for factory in registry.FAMILIES:
        assert isinstance(factory.accepts(config), bool)
        assert isinstance(factory.tasks_of(config), frozenset)
    assert isinstance(registry.tasks_of(config), frozenset)
    try:
        registry.factory_for(config)
    except ModelLoadError as exc:
        assert "unsupported model" in str(exc)


def test_a_string_architecture_is_named_whole_in_the_error():
    from mmstudio.models.registry import factory_for

    with pytest.raises(ModelLoadError) as caught:
        factory_for({"model_type": "llama", "architectures": "LlamaForCausalLM"})
    assert "LlamaForCausalLM" in str(caught.value) and "L, l" not in str(caught.value)


def _cache_entry(cache: Path, repo_id: str, source: Path | None, config_text: str | None = None) -> None:
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    if source is not None:
        for item in source.iterdir():
            shutil.copy2(item, snapshot / item.name)
    if config_text is not None:
        (snapshot / "config.json").write_text(config_text)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.fixture()
def bad_cache(sources, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    _cache_entry(cache, "someone/good-caption", sources["caption"])
    bad_archs = json.loads((sources["caption"] / "config.json").read_text())
    bad_archs["architectures"] = [{"a": 1}]
    _cache_entry(cache, "someone/dict-architectures", sources["caption"], json.dumps(bad_archs))
    _cache_entry(cache, "someone/string-architectures", sources["caption"],
                 json.dumps({**bad_archs, "architectures": "BlipForConditionalGeneration"}))
    _cache_entry(cache, "someone/not-json", sources["caption"], "{not json")
    _cache_entry(cache, "someone/deep", sources["caption"],
                 '{"model_type": "blip", "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_bad_folder_in_the_hf_cache_is_listed_as_broken_not_fatal(capsys, bad_cache):
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["someone/good-caption"]["tasks"] == ["caption"] and not rows["someone/good-caption"].get("problem")
    assert rows["someone/string-architectures"]["tasks"] == ["caption"]  # one name, not a list of one: fine
    for broken in ("someone/dict-architectures", "someone/not-json", "someone/deep"):
        assert rows[broken]["tasks"] == [] and rows[broken]["problem"], rows[broken]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "someone/not-json" in out and "broken" in out


def test_the_model_dialog_shows_a_broken_cache_entry_disabled(qtbot, bad_cache):
    from mmstudio.gui.qt_model_dialog import ModelDialog

    current = {task: f"builtin:{name}" for task, name in ((Task.CAPTION, "caption"), (Task.VQA, "vqa"),
                                                          (Task.ITM, "retrieval"))}
    dialog = ModelDialog(current, CPU)
    qtbot.addWidget(dialog)
    combo = dialog.combos[Task.CAPTION]
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert any("someone/good-caption" in t for t in texts)
    broken = [i for i, t in enumerate(texts) if "someone/not-json" in t]
    assert broken and not combo.model().item(broken[0]).isEnabled()
    assert dialog.chosen_models()[Task.CAPTION] == "builtin:caption"


# ------------------------------------------------------ 8. hints and token ids


BAD_HINTS = {
    "attention-abc": '{"attention": "abc"}',
    "a-layer-of-10**6": '{"attention": {"caption_layer": 1000000, "itm_gradcam_layer": 1000000}}',
    "a-negative-layer": '{"attention": {"caption_layer": -3}}',
    "a-layer-that-is-a-word": '{"attention": {"caption_layer": "abc", "vqa_layer": [1]}}',
    "a-layer-that-is-true": '{"attention": {"caption_layer": true}}',
    "a-list": "[1, 2, 3]",
    "not-json": "{nope",
    "nested-100000-deep": '{"attention": ' + "[" * 100_000 + "]" * 100_000 + "}",
}


@pytest.mark.parametrize("case", sorted(BAD_HINTS))
def test_a_bad_hints_file_is_ignored_and_the_model_still_runs(sources, tmp_path, scene_images, case):
    folder = copy_model(sources["caption"], tmp_path / "m")
    (folder / "mmstudio.json").write_text(BAD_HINTS[case])
    adapter = load(folder)
    assert all(v == "mean" or (isinstance(v, int) and 0 <= v < adapter.text_layers)
               for v in adapter.hints.values()), adapter.hints
    result = adapter.caption(scene_images[:1], attention=True)[0]
    result.attention.maps()  # the default layer is one the stack has


def test_good_hints_are_kept(sources, tmp_path):
    folder = copy_model(sources["caption"], tmp_path / "m")
    (folder / "mmstudio.json").write_text('{"attention": {"caption_layer": 1, "vqa_layer": "mean"}}')
    assert load(folder).hints == {"caption_layer": 1, "vqa_layer": "mean"}


TOKEN_IDS = {
    "caption-bos-10**6": ("caption", lambda c: c["text_config"].update(bos_token_id=10**6), "bos_token_id"),
    "caption-sep-negative": ("caption", lambda c: c["text_config"].update(sep_token_id=-4), "sep_token_id"),
    "vqa-pad-past-the-vocabulary": ("vqa", lambda c: c["text_config"].update(pad_token_id=10**5), "pad_token_id"),
    "vit-gpt2-decoder-start-10**6": ("vit-gpt2", lambda c: c.update(decoder_start_token_id=10**6),
                                     "decoder_start_token_id"),
    "vit-gpt2-eos-10**6": ("vit-gpt2", lambda c: c.update(eos_token_id=10**6), "eos_token_id"),
}


@pytest.mark.parametrize("case", sorted(TOKEN_IDS))
def test_special_token_ids_outside_the_vocabulary_are_refused_at_load(sources, tmp_path, case):
    family, change, name = TOKEN_IDS[case]
    folder = copy_model(sources[family], tmp_path / case)
    edit_json(folder / "config.json", change)
    generation = folder / "generation_config.json"
    if family == "vit-gpt2" and generation.exists():  # the generation config would win over the model config
        edit_json(generation, lambda g: g.update({k: v for k, v in json.loads(
            (folder / "config.json").read_text()).items() if k in ("decoder_start_token_id", "eos_token_id")}))
    with pytest.raises(ModelLoadError) as caught:
        load(folder)
    assert name in str(caught.value) and str(folder) in str(caught.value) and "vocabulary" in str(caught.value)

"""Broken, missing and unsafe model folders give clear errors; a good model keeps working."""

from __future__ import annotations

import json
import shutil

import pytest

from mmstudio.engine import Engine
from mmstudio.errors import ModelLoadError, ModelNotFoundError
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.loading import pick_device, resolve


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such model folder"):
        resolve(tmp_path / "nope" / "deeper")


def test_hub_id_offline_says_not_available_locally(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="not available locally"):
        resolve("Salesforce/blip-image-captioning-base-not-cached")


def test_missing_config(tiny_models, tmp_path):
    folder = copy_model(tiny_models[Task.CAPTION], tmp_path / "m")
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve(folder)


def test_broken_config(tiny_models, tmp_path):
    folder = copy_model(tiny_models[Task.CAPTION], tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="unreadable config"):
        resolve(folder)


def test_pickle_only_weights_refused_unless_allowed(tiny_models, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = copy_model(tiny_models[Task.CAPTION], tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        resolve(folder)
    resolve(folder, allow_pickle=True)  # the user said so explicitly


def test_truncated_weights(tiny_models, tmp_path):
    folder = copy_model(tiny_models[Task.CAPTION], tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    engine = Engine()
    with pytest.raises(ModelLoadError, match="cannot load"):
        engine.use(Task.CAPTION, folder)


def test_wrong_architecture(tiny_models, tmp_path):
    folder = copy_model(tiny_models[Task.CAPTION], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "llama"
    config["architectures"] = ["LlamaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unsupported model"):
        Engine().use(Task.CAPTION, folder)


def test_failed_switch_keeps_previous_model(tiny_models, tmp_path, scene_images):
    engine = Engine()
    engine.use(Task.CAPTION, tiny_models[Task.CAPTION])
    before = engine.caption(scene_images[:1])[0].caption
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ModelLoadError):
        engine.use(Task.CAPTION, broken)
    assert engine.model_name(Task.CAPTION) == str(tiny_models[Task.CAPTION])
    assert engine.caption(scene_images[:1])[0].caption == before


def test_device_choice():
    assert pick_device("auto") in ("cpu", "cuda", "mps")
    assert pick_device("cpu") == "cpu"
    with pytest.raises(ModelLoadError, match="unknown device"):
        pick_device("tpu")


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_dtypes_run(tiny_models, scene_images, dtype):
    engine = Engine(LoadOptions(device="cpu", dtype=dtype))
    result = engine.caption(scene_images[:2], model=str(tiny_models[Task.CAPTION]), attention=True)
    assert all(isinstance(r.caption, str) for r in result)
    assert result[0].attention.weights.dtype.name == "float32"


def fake_hub_cache(cache, repo_id: str, source) -> None:
    """Lay a model out the way huggingface_hub caches it: blobs behind snapshots/<rev>, refs/main."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for item in source.iterdir():
        shutil.copy2(item, snapshot / item.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def test_models_from_the_hf_cache(tiny_models, tmp_path, monkeypatch, scene_images):
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "someone/tiny-blip-caption", tiny_models[Task.CAPTION])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    resolved = resolve("someone/tiny-blip-caption")
    assert resolved.path.name == "0123456789abcdef0123456789abcdef01234567"
    caption = Engine().caption(scene_images[:1], model="someone/tiny-blip-caption")[0].caption
    assert isinstance(caption, str)
    from mmstudio.models.catalog import cached_models

    names = {entry.name: entry for entry in cached_models()}
    assert Task.CAPTION in names["someone/tiny-blip-caption"].tasks


@pytest.mark.parametrize("task", [Task.CAPTION, Task.VQA, Task.ITM])
def test_the_speedups_install_on_the_built_in_models(task):
    """The fused ViT attention and the cross-attention memo patch transformers' modules by name: a
    transformers release that renames them must fail here, not silently lose the speed."""
    adapter = Engine(LoadOptions(device="cpu", dtype="fp32")).adapter(task)
    fused = [m for m in adapter.model.vision_model.modules() if type(m).__name__ == "FusedBlipAttention"]
    assert len(fused) == adapter.model.config.vision_config.num_hidden_layers
    if task != Task.CAPTION:
        assert adapter.cross_memo.installed == 2 * adapter.model.config.text_config.num_hidden_layers

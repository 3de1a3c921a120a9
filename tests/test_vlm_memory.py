"""A chat model too large for the machine is refused before anything is allocated, with the size it needs."""

from __future__ import annotations

import json
import shutil

import pytest

from mmstudio.engine import Engine
from mmstudio.errors import ModelLoadError
from mmstudio.models.base import LoadOptions, Task
from mmstudio.resources import builtin_models_dir


def test_a_2b_chat_model_is_not_loaded_where_memory_is_short_and_says_what_it_needs(tmp_path, monkeypatch):
    import mmstudio.models.memory as memory

    folder = tmp_path / "big-llava"
    shutil.copytree(builtin_models_dir() / "chat", folder)
    config = json.loads((folder / "config.json").read_text())
    # A Llama of about 1.5 billion parameters behind the same vision tower (near SmolVLM-2B).
    config["text_config"].update(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                                 num_attention_heads=16, num_key_value_heads=16, vocab_size=49152)
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(memory, "_free_ram", lambda: 4 * 2**30)
    with pytest.raises(ModelLoadError) as caught:
        Engine().adapter(Task.VQA, str(folder))
    message = str(caught.value)
    assert str(folder) in message and "million parameters" in message and "4.0 GB available" in message
    needed = float(message.split("needs ~")[1].split(" GB")[0])
    assert 5 < needed < 7  # fp32: four bytes a parameter
    # In bf16 it needs half: measured against the memory there is, again before anything is allocated.
    monkeypatch.setattr(memory, "_free_ram", lambda: 2 * 2**30)
    with pytest.raises(ModelLoadError) as caught:
        Engine(LoadOptions(dtype="bf16")).adapter(Task.VQA, str(folder))
    assert float(str(caught.value).split("needs ~")[1].split(" GB")[0]) == pytest.approx(needed / 2, abs=0.1)

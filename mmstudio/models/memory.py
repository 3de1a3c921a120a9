"""Whether the model a config describes fits in memory, judged before any of it is allocated.

A config can ask for anything: 2000 layers reached 5.5 GB over minutes before transformers said a word,
10**4 ended in a bare MemoryError. The model is built on torch's "meta" device instead (shapes, no
storage), which costs about a second even for hundreds of layers; counts that would make even that slow
are refused first.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmstudio.errors import ModelLoadError

# The deepest published models have ~130 layers; past this a config is damaged, and building even an
# empty model of it takes seconds per thousand layers.
MAX_LAYERS = 256
_LAYER_KEYS = frozenset({"num_hidden_layers", "num_layers", "n_layer", "encoder_layers", "decoder_layers",
                         "num_decoder_layers", "num_encoder_layers"})
# A config builds one id2label entry per label: 10**9 labels would be a dict of 10**9 strings.
MAX_LABELS = 1_000_000


def check_fits(path: Path, cls, config: dict, *, dtype, device: str = "cpu") -> int:
    """The parameter count of `cls` built from `config`; ModelLoadError when absurd or larger than free memory."""
    import torch

    check_counts(path, config)
    count = parameter_count(path, cls, config)
    need = count * torch.empty((), dtype=dtype).element_size()
    for where, free in _free_memory(device):
        if free is not None and need > free:
            raise ModelLoadError(
                f"{path}: the model its config.json describes has {count / 1e6:,.0f} million parameters and "
                f"needs ~{_gb(need)} GB, {_gb(free)} GB available ({where}). Check the config's sizes (layers, "
                "hidden size, vocabulary), or free memory, or load it in fp16/bf16 (--dtype).")
    return count


def check_counts(path: Path, config: dict) -> None:
    """Refuse layer and label counts no real model has, before anything is built from them."""
    todo = [config]
    while todo:
        node = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, (dict, list)):
                todo.append(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                if key in _LAYER_KEYS and value > MAX_LAYERS:
                    raise ModelLoadError(
                        f"{path}: config.json asks for {value:,} layers ({key}); mmstudio loads at most {MAX_LAYERS} "
                        "(the deepest published models have about 130): the config is damaged")
                if key == "num_labels" and value > MAX_LABELS:
                    raise ModelLoadError(f"{path}: config.json asks for {value:,} answer labels (num_labels); "
                                         f"mmstudio loads at most {MAX_LABELS:,}: the config is damaged")


def parameter_count(path: Path, cls, config: dict) -> int:
    """Parameters of `cls(config)`, built without storage: ModelLoadError when transformers cannot build it."""
    import torch

    try:
        built = cls.config_class.from_dict(dict(config))
        try:
            with torch.device("meta"):
                model = cls(built)
        except Exception:  # noqa: BLE001 - some models call .item() while building (drop-path rates)
            from accelerate import init_empty_weights

            with init_empty_weights():
                model = cls(built)
    except Exception as exc:  # noqa: BLE001 - a hostile config fails in as many ways as transformers has checks
        text = " ".join(str(exc).split())[:300]
        raise ModelLoadError(f"{path}: transformers cannot build the model config.json describes "
                             f"({type(exc).__name__}: {text})") from None
    return sum(p.numel() for p in model.parameters())


def _free_memory(device: str) -> list[tuple[str, int | None]]:
    """(where, free bytes or None when unknown) of the memories a model on `device` occupies."""
    found = [("memory", _free_ram())]  # transformers reads the weights into RAM first, on any device
    if device.startswith("cuda"):
        try:
            import torch

            found.append((device, int(torch.cuda.mem_get_info(torch.device(device))[0])))
        except Exception:  # noqa: BLE001 - no answer from the driver: the load will say
            pass
    return found


def _free_ram() -> int | None:
    try:
        import psutil  # a dependency of accelerate

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - fall back to what the system says directly
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _gb(size: int) -> str:
    return f"{size / 2**30:,.1f}"

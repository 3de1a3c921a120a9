"""Finding a model's folder (local, HF cache, hub) and checking it before torch touches it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mmstudio.errors import DownloadError, ModelLoadError, ModelNotFoundError
from mmstudio.models.base import DEVICE_ENV, Task
from mmstudio.models.hub import download, hub_cache, hub_offline, offline_message
from mmstudio.resources import builtin_models_dir
from mmstudio.validation import device, dtype

BUILTIN_PREFIX = "builtin:"
BUILTIN_FOR_TASK = {Task.CAPTION: "caption", Task.VQA: "vqa", Task.ITM: "retrieval"}
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.md"]


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    config: dict


def builtin_name(task: Task) -> str:
    return BUILTIN_PREFIX + BUILTIN_FOR_TASK[Task(task)]


def resolve(name: str | os.PathLike, *, allow_pickle: bool = False) -> ResolvedModel:
    """Turn what a user typed into a checked local folder.

    Order: "builtin:NAME", an existing local folder, the HF cache, then the hub
    (only when the hub is reachable and not switched off with HF_HUB_OFFLINE).
    """
    text = os.fspath(name)
    if text.startswith(BUILTIN_PREFIX):
        folder = builtin_models_dir() / text[len(BUILTIN_PREFIX):]
        if not folder.is_dir():
            raise ModelNotFoundError(
                f"built-in model {text!r} is missing from {builtin_models_dir()}; "
                "reinstall mmstudio or retrain it (see resources/models/README.md)"
            )
        path = folder
    elif Path(text).expanduser().exists():
        path = Path(text).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"{path}: a model is a folder with config.json and weights, not a file")
    elif _looks_like_hub_id(text):
        path = _from_hub(text)
    else:
        raise ModelNotFoundError(f"{text}: no such model folder")
    path = path.resolve()
    config = read_config(path)
    check_weights(path, allow_pickle=allow_pickle)
    return ResolvedModel(name=text, path=path, config=config)


# A model's config.json is a few kB (a VQA head's answer labels: a few hundred); one of 200 MB took 1.4 GB to read.
MAX_CONFIG_BYTES = 8 * 2**20
# Real configs nest 3 or 4 levels (a text_config's rope_scaling); deeper ones end in a RecursionError somewhere.
MAX_JSON_DEPTH = 32


def read_json_capped(file: Path, *, max_bytes: int) -> object:
    """The JSON value of a file, refused (ValueError saying why) when larger than `max_bytes` or deeply nested."""
    with open(file, "rb") as stream:  # read no more than the cap: a special file or a link to one never ends
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes // 2**20} MB, far more than any model's settings")
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    if _too_deep(value):
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _too_deep(value: object) -> bool:
    todo = [(value, 1)] if isinstance(value, (dict, list)) else []
    while todo:
        node, level = todo.pop()
        if level > MAX_JSON_DEPTH:
            return True
        children = node.values() if isinstance(node, dict) else node
        todo.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return False


def read_config(path: Path) -> dict:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path}: no config.json, so this is not a transformers model folder")
    try:
        config = read_json_capped(config_file, max_bytes=MAX_CONFIG_BYTES)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config_file}: unreadable config ({exc})") from None
    except ValueError as exc:
        raise ModelLoadError(f"{config_file}: refused: the config is {exc}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelLoadError(f"{config_file}: config has no model_type")
    return config


def check_weights(path: Path, *, allow_pickle: bool) -> None:
    names = {p.name for p in path.iterdir()}
    if any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
        return
    pickles = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
    if pickles:
        if allow_pickle:
            return
        raise ModelLoadError(
            f"{path}: weights are only in pickle format ({', '.join(pickles)}). Loading pickle files can run "
            "arbitrary code; convert them to safetensors, or allow pickle explicitly (--allow-pickle)."
        )
    raise ModelLoadError(f"{path}: no weights (.safetensors) in the folder")


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES, local_files_only=True,
                                      cache_dir=hub_cache()))
    except Exception:  # noqa: BLE001 - any cache miss falls through to the hub
        pass
    if hub_offline():
        raise ModelNotFoundError(f"{repo_id}: not available locally (not in the Hugging Face cache), and "
                                 f"{offline_message(repo_id)}")
    try:  # the model manager's path, safetensors only and checked (no progress here: "Get a model" shows it)
        return download(repo_id)
    except DownloadError as exc:
        raise ModelNotFoundError(f"{repo_id}: not available locally, and {exc}") from None


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"

    # "mpsfoo" or "cuda:x" once passed a prefix test here and failed deep in torch's .to()
    problem = device(requested)
    if problem:
        raise ModelLoadError(f"{problem} (from --device or ${DEVICE_ENV})")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("CUDA was asked for, but this torch build or machine has no CUDA device")
    if requested.startswith("cuda:") and int(requested[5:]) >= torch.cuda.device_count():
        raise ModelLoadError(f"{requested} was asked for, but this machine has {torch.cuda.device_count()} "
                             "CUDA device(s), numbered from 0")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("MPS was asked for, but this machine has no Apple GPU available to torch")
    return requested


def torch_dtype(name: str):
    import torch

    problem = dtype(name)  # the one list of precisions (mmstudio.validation.DTYPES) and its wording
    if problem:
        raise ModelLoadError(problem)
    # int8 loads in fp32, then its Linear layers are quantized (models/quantize.py)
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}[name]


def list_cached_models() -> list[tuple[str, Path, dict, str]]:
    """(hub id, snapshot folder, config, problem) for every model in the HF cache that has a config.json.

    One whose config cannot be read comes with an empty config and the reason: a listing never fails for it.
    """
    try:
        from huggingface_hub import scan_cache_dir

        # Read the variable now: the library fixes its default when it is first imported.
        info = scan_cache_dir(hub_cache())
    except Exception:  # noqa: BLE001 - no cache yet, or an unreadable one: nothing to list
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            folder = Path(revision.snapshot_path)
            if not (folder / "config.json").is_file():
                continue  # not a transformers model (or not this revision): nothing to list
            try:
                found.append((repo.repo_id, folder, read_config(folder), ""))
            except ModelLoadError as exc:
                found.append((repo.repo_id, folder, {}, str(exc)))
            break
    return found


def quiet_transformers() -> None:
    """Progress bars and backend notices of transformers are noise in a CLI and a GUI."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()

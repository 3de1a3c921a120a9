"""Pieces every adapter file shares: loading a transformers class safely, and slicing attention into stacks."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from mmstudio.attention import AttentionStack, patches_to_grid
from mmstudio.errors import ModelLoadError
from mmstudio.models.base import Task
from mmstudio.models.completeness import check_complete
from mmstudio.models.loading import pick_device, torch_dtype
from mmstudio.models.memory import check_fits


@dataclass(frozen=True)
class Architectures:
    """A family's checkpoints: its config `model_type` and the task of each architecture it runs."""

    model_type: str
    tasks: Mapping[str, Task]

    def of(self, config: dict) -> str | None:
        """The first architecture of `config` this family runs, or None."""
        if config.get("model_type") != self.model_type:
            return None
        return next((a for a in architecture_names(config) if a in self.tasks), None)

    def accepts(self, config: dict) -> bool:
        return self.of(config) is not None

    def tasks_of(self, config: dict) -> frozenset[Task]:
        arch = self.of(config)
        return frozenset({self.tasks[arch]}) if arch else frozenset()


def architecture_names(config: dict) -> list[str]:
    """The names in a config's `architectures`: a lone name counts as a list of it, anything not a name is dropped."""
    archs = config.get("architectures")
    if isinstance(archs, str):
        archs = [archs]
    return [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []


def from_pretrained(cls, resolved, options, **kwargs):
    """`cls.from_pretrained` of a resolved folder, on guard against what the folder may hold.

    Safetensors only (unless allowed); never the folder's own code (transformers would otherwise ask
    on standard input whether to run it); no model larger than free memory; and unless
    `options.strict` is off, every weight the config asks for present (see completeness.py).
    """
    import transformers

    dtype = torch_dtype(options.dtype)
    check_token_ids_of_config(resolved.path, resolved.config)
    check_fits(resolved.path, cls, resolved.config, dtype=dtype, device=pick_device(options.device))
    kwargs["use_safetensors"] = None if options.allow_pickle else True
    major_minor = tuple(int(p) for p in transformers.__version__.split(".")[:2])
    kwargs["dtype" if major_minor >= (4, 56) else "torch_dtype"] = dtype
    model, info = cls.from_pretrained(resolved.path, trust_remote_code=False, output_loading_info=True, **kwargs)
    if options.strict:
        check_complete(resolved.path, model, info)
    return model


def auto_image_processor(path):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(path, trust_remote_code=False)


def auto_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def tokenizer_and_image_processor(path) -> tuple:
    return auto_tokenizer(path), auto_image_processor(path)


def load_parts(cls, resolved, options, *, what: str, processing=tokenizer_and_image_processor, **kwargs) -> tuple:
    """(model on its device in eval mode, *processing(folder)) of a checkpoint folder.

    Any failure of safetensors, torch or transformers becomes one ModelLoadError naming the folder.
    `processing` loads what turns images and text into tensors (default: a tokenizer and an image processor).
    """
    device = pick_device(options.device)
    if options.dtype == "int8" and device != "cpu":
        raise ModelLoadError(f"{resolved.path}: int8 runs on the CPU only (dynamic quantization); on {device} "
                             "choose fp16 or bf16, or choose the cpu device")
    try:
        model = from_pretrained(cls, resolved, options, **kwargs)
        parts = tuple(processing(resolved.path))
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and transformers raise many kinds
        raise load_error(resolved.path, what, exc) from None
    model = model.to(device).eval()
    if options.dtype == "int8":
        from mmstudio.models.quantize import quantize_int8

        model = quantize_int8(model)
    return (model, *parts)


def load_error(path, what: str, exc: BaseException):
    """One line naming the folder, for whatever safetensors, torch or transformers raised while loading it."""
    text = " ".join(str(exc).split())
    if "trust_remote_code" in text:
        return ModelLoadError(
            f"{path}: the folder asks to run its own Python code (an auto_map entry in its JSON files) to load "
            f"this {what} checkpoint; mmstudio never runs code from a model folder. Use a folder whose files name "
            "standard transformers classes.")
    if len(text) > 400:
        text = text[:400] + " ..."
    return ModelLoadError(f"{path}: cannot load the {what} checkpoint: {type(exc).__name__}: {text}")


TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id")


def check_token_ids(path, ids: dict, vocab_size, *, where: str = "config.json") -> None:
    """ModelLoadError for a special token id that is not a row of the vocabulary (an IndexError at inference)."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 0:
        raise ModelLoadError(f"{path}: {where} gives no usable vocab_size ({vocab_size!r})")
    bad = []
    for name, value in ids.items():
        values = value if isinstance(value, list) else [value]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < vocab_size)
               for v in values):
            bad.append(f"{name} {value!r}")
    if bad:
        raise ModelLoadError(f"{path}: {', '.join(bad)} in {where} lies outside the vocabulary of {vocab_size} "
                             f"tokens (ids 0 to {vocab_size - 1}): the file is damaged; fix the id")


def check_token_ids_of_config(path, config: dict) -> None:
    """Special token ids of every part of a config (a BLIP text_config, an encoder-decoder's decoder) in range.

    Before anything is built: an id past the vocabulary fails deep in torch (a padding row) or at inference.
    """
    todo = [config]
    while todo:
        node = todo.pop()
        vocab = node.get("vocab_size")
        decoder = node.get("decoder")
        if vocab is None and isinstance(decoder, dict):  # an encoder-decoder's own ids are the decoder's tokens
            vocab = decoder.get("vocab_size")
        if vocab is not None:
            ids = {k: node[k] for k in TOKEN_ID_KEYS if k in node and not (k == "pad_token_id" and node[k] == -1)}
            check_token_ids(path, ids, vocab)
        todo.extend(child for child in node.values() if isinstance(child, dict))


def cut_at(ids: list[int], stops: set[int], start: int = 0) -> list[int]:
    """`ids` up to the first stop token at or after `start` (the ones before it, a prompt, are kept whole)."""
    for i in range(start, len(ids)):
        if ids[i] in stops:
            return ids[:i]
    return ids


def to_numpy(attentions) -> list[np.ndarray]:
    return [a.float().cpu().numpy() for a in attentions]


def stack_from(cross: list[np.ndarray], b: int, queries, tokens, default_layer) -> AttentionStack:
    """Sample b's attention at the given query positions; cross[l]: (B, H, T, N) -> (T', L, H, rows, cols)."""
    per_layer = [np.moveaxis(layer[b][:, list(queries), :], 1, 0) for layer in cross]  # L x (T', H, N)
    weights = patches_to_grid(np.stack(per_layer, axis=1)).astype(np.float32)
    return AttentionStack(tuple(tokens), weights, tuple(range(len(cross))), default_layer)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run a tiny forward pass (one short text) on one intra-op thread.

    Such a pass gains nothing from more threads, and on a machine whose cores are
    busy (a training job) waiting for the other threads costs 10-100x its time.
    The setting is process-wide: use it only on the thread that owns the models.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

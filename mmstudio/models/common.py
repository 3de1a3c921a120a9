"""Pieces every adapter file shares: loading a transformers class safely, and slicing attention into stacks."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from mmstudio.attention import AttentionStack, patches_to_grid
from mmstudio.models.base import Task


@dataclass(frozen=True)
class Architectures:
    """A family's checkpoints: its config `model_type` and the task of each architecture it runs."""

    model_type: str
    tasks: Mapping[str, Task]

    def of(self, config: dict) -> str | None:
        """The first architecture of `config` this family runs, or None."""
        if config.get("model_type") != self.model_type:
            return None
        return next((a for a in config.get("architectures") or [] if a in self.tasks), None)

    def accepts(self, config: dict) -> bool:
        return self.of(config) is not None

    def tasks_of(self, config: dict) -> frozenset[Task]:
        arch = self.of(config)
        return frozenset({self.tasks[arch]}) if arch else frozenset()


def from_pretrained(cls, path, *, dtype, allow_pickle: bool, **kwargs):
    """`cls.from_pretrained` with safetensors only (unless allowed) and the dtype keyword of this transformers."""
    import transformers

    kwargs["use_safetensors"] = None if allow_pickle else True
    major_minor = tuple(int(p) for p in transformers.__version__.split(".")[:2])
    kwargs["dtype" if major_minor >= (4, 56) else "torch_dtype"] = dtype
    return cls.from_pretrained(path, **kwargs)


def load_parts(cls, resolved, options, *, what: str, image_processor=None, **kwargs):
    """(model on its device in eval mode, tokenizer, image processor) of a checkpoint folder.

    Any failure of safetensors, torch or transformers becomes one ModelLoadError naming the folder.
    `image_processor` loads the processor from the folder (default: AutoImageProcessor).
    """
    from transformers import AutoImageProcessor, AutoTokenizer

    from mmstudio.errors import ModelLoadError
    from mmstudio.models.loading import pick_device, torch_dtype

    device = pick_device(options.device)
    try:
        model = from_pretrained(cls, resolved.path, dtype=torch_dtype(options.dtype),
                                allow_pickle=options.allow_pickle, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        processor = (image_processor or AutoImageProcessor.from_pretrained)(resolved.path)
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and transformers raise many kinds
        raise ModelLoadError(f"{resolved.path}: cannot load the {what} checkpoint: "
                             f"{type(exc).__name__}: {exc}") from None
    return model.to(device).eval(), tokenizer, processor


def cut_at(ids: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in stops:
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

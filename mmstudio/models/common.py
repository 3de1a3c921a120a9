"""Pieces every adapter file shares: loading a transformers class safely, and slicing attention into stacks."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from mmstudio.attention import AttentionStack, patches_to_grid


def from_pretrained(cls, path, *, dtype, allow_pickle: bool, **kwargs):
    """`cls.from_pretrained` with safetensors only (unless allowed) and the dtype keyword of this transformers."""
    import transformers

    kwargs["use_safetensors"] = None if allow_pickle else True
    major_minor = tuple(int(p) for p in transformers.__version__.split(".")[:2])
    kwargs["dtype" if major_minor >= (4, 56) else "torch_dtype"] = dtype
    return cls.from_pretrained(path, **kwargs)


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

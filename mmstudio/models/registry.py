"""The explicit list of model families mmstudio can run, and loading through it."""

from __future__ import annotations

import os
import threading

from mmstudio.errors import ModelLoadError
from mmstudio.models import blip, clip, vilt, vit_gpt2
from mmstudio.models.base import AdapterFactory, LoadOptions, ModelAdapter, Task
from mmstudio.models.loading import quiet_transformers, resolve

# Order matters only when two families accept one config; the first wins.
FAMILIES: tuple[AdapterFactory, ...] = (blip.FACTORY, vit_gpt2.FACTORY, vilt.FACTORY, clip.FACTORY)


def factory_for(config: dict) -> AdapterFactory:
    for factory in FAMILIES:
        if factory.accepts(config):
            return factory
    kind = config.get("model_type", "?")
    archs = ", ".join(config.get("architectures") or []) or "no architectures listed"
    supported = ", ".join(f.family for f in FAMILIES)
    raise ModelLoadError(f"unsupported model: model_type {kind!r} ({archs}); mmstudio runs {supported}")


def tasks_of(config: dict) -> frozenset[Task]:
    try:
        return factory_for(config).tasks_of(config)
    except ModelLoadError:
        return frozenset()


# transformers builds models under process-wide context managers (meta device, default dtype):
# two threads loading at once corrupt each other, so loads take turns.
_LOADING = threading.Lock()


def load_adapter(name: str | os.PathLike, options: LoadOptions = LoadOptions()) -> ModelAdapter:
    resolved = resolve(name, allow_pickle=options.allow_pickle)
    try:
        factory = factory_for(resolved.config)
    except ModelLoadError as exc:
        # factory_for judges a config alone; the user must also learn which folder held it.
        raise ModelLoadError(f"{resolved.path}: {exc}") from None
    quiet_transformers()
    with _LOADING:
        return factory.load(resolved, options)

"""The explicit list of model families mmstudio can run, and loading through it."""

from __future__ import annotations

import os
import threading

from mmstudio.errors import MMStudioError, ModelLoadError
from mmstudio.models import blip, clip, siglip, vilt, vit_gpt2, vlm
from mmstudio.models.base import AdapterFactory, LoadOptions, ModelAdapter, Task
from mmstudio.models.common import architecture_names
from mmstudio.models.loading import quiet_transformers, resolve

# Order matters only when two families accept one config; the first wins.
FAMILIES: tuple[AdapterFactory, ...] = (blip.FACTORY, vit_gpt2.FACTORY, vilt.FACTORY, clip.FACTORY,
                                        siglip.FACTORY, vlm.FACTORY)
# The config model types of those families: a folder of one that no family accepts is broken, not foreign.
MODEL_TYPES = frozenset({"blip", "vision-encoder-decoder", "vilt", "clip", "siglip", "siglip2"} | vlm.LAYOUTS)


def factory_for(config: dict) -> AdapterFactory:
    for factory in FAMILIES:
        if factory.accepts(config):
            return factory
    kind = config.get("model_type", "?")
    archs = ", ".join(architecture_names(config)) or "no architectures listed"
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
        try:
            return factory.load(resolved, options)
        except MMStudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - a config transformers took may still break an adapter
            raise ModelLoadError(f"{resolved.path}: cannot use this {factory.family} model: "
                                 f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc

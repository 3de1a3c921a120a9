"""The models a user can pick: the built-in ones and those in the Hugging Face cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmstudio.errors import ModelLoadError
from mmstudio.models.base import Task
from mmstudio.models.loading import BUILTIN_PREFIX, list_cached_models, read_config
from mmstudio.models.registry import tasks_of
from mmstudio.resources import builtin_models_dir


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # what --model takes
    source: str  # "built-in" or "hf-cache"
    path: Path
    tasks: frozenset[Task]

    def as_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "path": str(self.path),
                "tasks": sorted(t.value for t in self.tasks)}


def builtin_models() -> list[CatalogEntry]:
    root = builtin_models_dir()
    entries = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            config = read_config(folder)
        except ModelLoadError:
            continue
        entries.append(CatalogEntry(BUILTIN_PREFIX + folder.name, "built-in", folder, tasks_of(config)))
    return entries


def cached_models() -> list[CatalogEntry]:
    entries = []
    for repo_id, folder, config in list_cached_models():
        tasks = tasks_of(config)
        if tasks:
            entries.append(CatalogEntry(repo_id, "hf-cache", folder, tasks))
    return entries


def available_models() -> list[CatalogEntry]:
    return builtin_models() + cached_models()

"""The models a user can pick: the built-in ones and those in the Hugging Face cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmstudio.errors import ModelLoadError
from mmstudio.models.base import Task
from mmstudio.models.common import architecture_names
from mmstudio.models.loading import BUILTIN_PREFIX, list_cached_models, read_config
from mmstudio.models.registry import MODEL_TYPES, tasks_of
from mmstudio.resources import builtin_models_dir


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # what --model takes
    source: str  # "built-in" or "hf-cache"
    path: Path
    tasks: frozenset[Task]
    problem: str = ""  # why the folder cannot be used (it then does no task); listed so that the user learns why

    def as_dict(self) -> dict:
        record = {"name": self.name, "source": self.source, "path": str(self.path),
                  "tasks": sorted(t.value for t in self.tasks)}
        if self.problem:
            record["problem"] = self.problem
        return record


def _entry(name: str, source: str, folder: Path, config: dict, problem: str = "") -> CatalogEntry | None:
    """The entry of one folder: its tasks, or why it is broken; None for a model of a family mmstudio does not run."""
    if problem:
        return CatalogEntry(name, source, folder, frozenset(), problem)
    try:
        tasks = tasks_of(config)
    except Exception as exc:  # noqa: BLE001 - one folder must never break the listing
        return CatalogEntry(name, source, folder, frozenset(), f"{type(exc).__name__}: {exc}")
    if tasks:
        return CatalogEntry(name, source, folder, tasks)
    if config.get("model_type") in MODEL_TYPES:
        archs = config.get("architectures")
        named = ", ".join(architecture_names(config))
        why = (f"architectures {named} are none that mmstudio runs" if named
               else f"config.json architectures is {str(archs)[:80]}, not a list of class names")
        return CatalogEntry(name, source, folder, frozenset(), f"{folder / 'config.json'}: {why}")
    return None


def builtin_models() -> list[CatalogEntry]:
    root = builtin_models_dir()
    entries = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not (folder / "config.json").is_file():
            continue
        try:
            entry = _entry(BUILTIN_PREFIX + folder.name, "built-in", folder, read_config(folder))
        except ModelLoadError as exc:
            entry = _entry(BUILTIN_PREFIX + folder.name, "built-in", folder, {}, str(exc))
        if entry is not None:
            entries.append(entry)
    return entries


def cached_models() -> list[CatalogEntry]:
    entries = []
    for repo_id, folder, config, problem in list_cached_models():
        entry = _entry(repo_id, "hf-cache", folder, config, problem)
        if entry is not None:
            entries.append(entry)
    return entries


def available_models() -> list[CatalogEntry]:
    return builtin_models() + cached_models()

"""Frozen config dataclasses as versioned JSON documents: `{"kind": ..., "version": N, ...fields}`.

A job's settings are data (vorta's rule: store the config, not the argv). A config class names its
document with `KIND` and `VERSION` and may list `UPGRADES`; this module writes and reads the documents
for every such class from the fields' type hints, so a new field is serialized without a new line here.

Reading is strict, because a document may be hand-written or come from a newer mmstudio: an unknown
field, a missing required field, a value of the wrong type, or a newer version is refused with a
SettingsError naming it. A field missing from the document takes its default (a document written
before that field existed); a change of meaning bumps VERSION and adds an upgrade from the version
before. The loaded config is checked with its `validate()`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

from mmstudio.errors import MMStudioError, SettingsError
from mmstudio.storage import disk_errors, write_json_atomic

C = TypeVar("C")
# A config class's UPGRADES map version N to a function turning a version-N document into version N+1.
Upgrade = Callable[[dict], dict]


def to_document(config) -> dict:
    """The JSON-ready document of a config: Paths as strings, enums as their values, tuples as lists."""
    hints = typing.get_type_hints(type(config))
    document: dict[str, Any] = {"kind": type(config).KIND, "version": type(config).VERSION}
    for f in dataclasses.fields(config):
        document[f.name] = _to_json(getattr(config, f.name), hints[f.name])
    return document


def from_document(cls: type[C], document: object) -> C:
    """The config a document stands for, checked; raises SettingsError naming the first bad field."""
    if not isinstance(document, dict):
        raise SettingsError("kind", f"must be given in a JSON object, got {type(document).__name__}",
                            f"a {cls.KIND} config must be a JSON object, got {type(document).__name__}")
    kind = document.get("kind")
    if kind != cls.KIND:
        raise SettingsError("kind", f"must be {cls.KIND!r}, got {kind!r}")
    document = _upgraded(cls, document)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(document) - set(known) - {"kind", "version"})
    if unknown:
        raise SettingsError(unknown[0], f"is not a setting of a {cls.KIND} config (known: {', '.join(known)})")
    values = {}
    for name, f in known.items():
        if name in document:
            values[name] = _from_json(name, document[name], hints[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SettingsError(name, f"is required in a {cls.KIND} config")
    config = cls(**values)
    config.validate()
    return config


def write_document(config, path: Path) -> Path:
    """Write the config's document atomically, with the mode of any other file the user keeps."""
    path = Path(path)
    with disk_errors(path.parent, "cannot write the job settings to"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, to_document(config))
    return path


def read_document(cls: type[C], path: Path) -> C:
    """Read a config file; its problems name the file and the field."""
    path = Path(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise MMStudioError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise MMStudioError(f"{path}: not a JSON config: {exc}") from None
    try:
        return from_document(cls, document)
    except SettingsError as exc:
        raise SettingsError(exc.name, exc.reason, f"{path}: {exc}") from None


def check_fields(config, rules) -> None:
    """Raise SettingsError for the first (field name, rule) whose rule finds a problem with the value."""
    for name, rule in rules:
        problem = rule(getattr(config, name))
        if problem:
            raise SettingsError(name, problem)


class Document:
    """What a config dataclass gets from being a document: JSON in and out, a file in and out.

    Subclasses are frozen dataclasses with KIND, VERSION and UPGRADES class variables.
    """

    def to_document(self) -> dict:
        return to_document(self)

    @classmethod
    def from_document(cls: type[C], document: object) -> C:
        """The config of a document, validated (SettingsError names the first bad field)."""
        return from_document(cls, document)

    def write(self, path: Path) -> Path:
        return write_document(self, path)

    @classmethod
    def read(cls: type[C], path: Path) -> C:
        return read_document(cls, path)


def _upgraded(cls, document: dict) -> dict:
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SettingsError("version", f"must be an integer, got {version!r}")
    if version > cls.VERSION:
        raise SettingsError("version", f"is {version}, newer than this mmstudio reads ({cls.KIND} configs up to "
                                       f"version {cls.VERSION}): update mmstudio to use this config")
    upgrades: dict[int, Upgrade] = getattr(cls, "UPGRADES", {})
    while version < cls.VERSION:
        if version not in upgrades:
            raise SettingsError("version", f"is {version}: {cls.KIND} configs of that version are not read any more")
        document = {**upgrades[version](dict(document)), "version": version + 1}
        version += 1
    return document


def _optional(hint) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of a hint like `int | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _to_json(value, hint):
    kind, _ = _optional(hint)
    if value is None:
        return None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value).value
    if kind is Path:
        return os.fspath(value)
    if typing.get_origin(kind) is tuple:
        return list(value)
    return value


def _from_json(name: str, value, hint):
    kind, nullable = _optional(hint)
    if value is None:
        if nullable:
            return None
        raise SettingsError(name, "must be set, got null")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        choices = [member.value for member in kind]
        if value not in choices:
            raise SettingsError(name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return kind(value)
    if kind is Path or kind is str:
        if not isinstance(value, str):
            raise SettingsError(name, f"must be a string, got {value!r}")
        return Path(value) if kind is Path else value
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(name, f"must be true or false, got {value!r}")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SettingsError(name, f"must be an integer, got {value!r}")
        return value
    if kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SettingsError(name, f"must be a number, got {value!r}")
        return float(value)
    if typing.get_origin(kind) is tuple and typing.get_args(kind)[1:] == (Ellipsis,):
        item = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise SettingsError(name, f"must be a list, got {value!r}")
        return tuple(_from_json(name, v, item) for v in value)
    raise TypeError(f"{name}: a config field of type {hint!r} has no JSON form")  # a programming error

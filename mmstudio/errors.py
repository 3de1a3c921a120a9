"""Typed exceptions of the core.

Every failure a user can cause (a bad file, a missing model, a bad dataset row)
is one of these, with a message fit to show as is. The GUI maps them to dialogs
in one place; the CLI prints them as one line.
"""

from __future__ import annotations


class MMStudioError(Exception):
    """Base of every error the core raises on purpose."""


class ImageLoadError(MMStudioError):
    """An image file could not be read: missing, not an image, truncated, too large."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelNotFoundError(MMStudioError):
    """No model at that folder, cache entry or hub id (and the hub is out of reach)."""


class ModelLoadError(MMStudioError):
    """A model folder exists but cannot be used: broken config, weights, or architecture."""


class DownloadError(MMStudioError):
    """A checkpoint cannot be downloaded: offline, unreachable, not on the hub, no safetensors, or corrupted."""


class UnsupportedTaskError(MMStudioError):
    """The model's family does not do the task asked of it."""


class DatasetError(MMStudioError):
    """A dataset folder is unusable; `problems` lists each bad row as 'file:line: why'."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        text = message
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            text += "\n" + "\n".join(f"  {p}" for p in shown)
            if more:
                text += f"\n  ... and {more} more"
        super().__init__(text)


class CancelledError(MMStudioError):
    """The work was cancelled by the user before it finished."""


class SettingsError(MMStudioError):
    """A setting is out of range or of the wrong kind; `name` is the setting (a field or a flag)."""

    def __init__(self, name: str, reason: str, message: str | None = None):
        self.name = name
        self.reason = reason
        super().__init__(message or f"{name} {reason}")


class StorageError(MMStudioError):
    """A file or folder cannot be written: no space, read-only, no permission, a file where a folder goes."""

    def __init__(self, path: object, message: str):
        self.path = str(path)
        super().__init__(message)

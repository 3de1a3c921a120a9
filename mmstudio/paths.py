"""Where mmstudio keeps what it writes for itself: one cache folder and one data folder.

They follow the XDG base directories, as Qt's own settings do on Linux: the cache holds what can
be rebuilt (search indexes), the data folder what cannot (the list of training jobs).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "mmstudio"


def _base(variable: str, default: Path) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec ignores a relative value, as if unset: such a folder would move with the working directory.
    return Path(value) if os.path.isabs(value) else default


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/mmstudio, by default ~/.cache/mmstudio."""
    return _base("XDG_CACHE_HOME", Path.home() / ".cache") / APP


def data_dir() -> Path:
    """$XDG_DATA_HOME/mmstudio, by default ~/.local/share/mmstudio."""
    return _base("XDG_DATA_HOME", Path.home() / ".local" / "share") / APP

"""Where the built-in resources (models, icons) live, installed or in a checkout."""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """The resources folder: inside the package when installed, beside it in a checkout,
    next to the executable in a frozen build."""
    candidates = [_PACKAGE / "resources", _PACKAGE.parent / "resources"]
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        candidates.insert(0, Path(frozen_root) / "resources")
    for candidate in candidates:
        if (candidate / "models").is_dir():
            return candidate
    return candidates[-1]


def builtin_models_dir() -> Path:
    return resources_dir() / "models"


def samples_dir() -> Path:
    """Shapes World scenes shipped for the welcome screen's "Open sample images"."""
    return resources_dir() / "samples"


def readme_path() -> Path | None:
    """The README (set-up, the command line, benchmarks): inside the resources when installed or frozen,
    at the top of a checkout. None when neither is there."""
    for candidate in (resources_dir() / "README.md", resources_dir().parent / "README.md"):
        if candidate.is_file():
            return candidate
    return None

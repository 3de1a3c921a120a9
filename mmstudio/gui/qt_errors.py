"""The one place where core exceptions become what a person reads."""

from __future__ import annotations

from mmstudio.errors import (
    CancelledError,
    DatasetError,
    ImageLoadError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedTaskError,
)

_TITLES = [
    (ImageLoadError, "Cannot open this image"),
    (ModelNotFoundError, "Model not found"),
    (ModelLoadError, "Cannot load this model"),
    (UnsupportedTaskError, "This model cannot do that"),
    (DatasetError, "Problems in the dataset"),
    (CancelledError, "Cancelled"),
]


def describe(exc: BaseException) -> tuple[str, str]:
    """(title, message) for a dialog or the message bar."""
    for kind, title in _TITLES:
        if isinstance(exc, kind):
            return title, str(exc)
    details = getattr(exc, "details", "")
    message = f"Something went wrong inside mmstudio: {type(exc).__name__}: {exc}"
    if details:
        message += "\n\n" + details.strip().splitlines()[-1]
    return "Unexpected error", message

"""Checks of single settings, shared by the CLI's argument types and the core's configs.

Each check takes a value and returns None when it is fine, or the reason it is
not ("must be a positive integer, got 0"). The CLI turns the reason into an
argparse error naming the flag; TrainConfig.validate into a SettingsError
naming the field. One wording for both, so the app and the CLI agree.
"""

from __future__ import annotations

import math
import os
import re
from typing import Callable

Check = Callable[[object], "str | None"]

SEED_MAX = 2**32 - 1  # numpy's and torch's seeding both take 32-bit seeds
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICES_TEXT = "auto, cpu, cuda, cuda:N or mps"
DTYPES = ("fp32", "fp16", "bf16", "int8")  # int8: the CPU only (models/quantize.py)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value) -> str | None:
    return None if _is_int(value) and value >= 1 else f"must be a positive integer, got {value!r}"


def non_negative_int(value) -> str | None:
    return None if _is_int(value) and value >= 0 else f"must be an integer of 0 or more, got {value!r}"


def seed(value) -> str | None:
    if _is_int(value) and 0 <= value <= SEED_MAX:
        return None
    return f"must be an integer from 0 to {SEED_MAX}, got {value!r}"


def positive_float(value) -> str | None:
    if _is_number(value) and math.isfinite(value) and value > 0:
        return None
    return f"must be a finite number above 0, got {value!r}"


def non_negative_float(value) -> str | None:
    if _is_number(value) and math.isfinite(value) and value >= 0:
        return None
    return f"must be a finite number of 0 or more, got {value!r}"


def probability(value) -> str | None:
    if _is_number(value) and 0 <= value <= 1:  # NaN fails both comparisons
        return None
    return f"must be a number from 0 to 1, got {value!r}"


def fraction_below_one(value) -> str | None:
    if _is_number(value) and 0 <= value < 1:
        return None
    return f"must be a number from 0 up to (not including) 1, got {value!r}"


def non_empty_path(value) -> str | None:
    # Path("") is Path("."): an empty field would silently mean the current folder (and walk all of it).
    if isinstance(value, (str, os.PathLike)) and os.fspath(value).strip():
        return None
    return "must not be empty"


def device(value) -> str | None:
    if isinstance(value, str) and DEVICE_PATTERN.match(value):
        return None
    return f"unknown device {value!r}; use {DEVICES_TEXT}"


def dtype(value) -> str | None:
    return None if value in DTYPES else f"unknown dtype {value!r}; use {', '.join(DTYPES)}"


def optional(check: Check) -> Check:
    """The same check, where None (the setting's "not set") is fine too."""
    def checked(value):
        return None if value is None else check(value)

    checked.__name__ = f"optional_{check.__name__}"
    return checked


def boolean(value) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def optional_boolean(value) -> str | None:
    return None if value is None or isinstance(value, bool) else f"must be true, false or unset, got {value!r}"

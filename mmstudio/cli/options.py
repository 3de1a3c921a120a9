"""Help texts and argument types of the flags that several commands share.

The types check values with mmstudio.validation, the checks TrainConfig.validate uses too, and
raise argparse.ArgumentTypeError: argparse then prints the usage line and
"mmstudio train: error: argument --batch-size: must be a positive integer, got 0" and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from mmstudio import validation as check
from mmstudio.errors import SettingsError
from mmstudio.models.base import DEVICE_ENV, DTYPE_ENV, THREADS_ENV

DEVICE_HELP = "auto: cuda, then mps, then cpu (the default, or $MMSTUDIO_DEVICE); or cpu, cuda, cuda:N, mps"
DTYPE_HELP = ("fp32 (the default, or $MMSTUDIO_DTYPE), fp16, bf16, or int8 (the CPU only: Linear layers "
              "quantized, about 2-4x faster)")
THREADS_HELP = ("CPU threads for the models (default: the machine's cores, shared among torchrun's processes on a "
                "node; or $MMSTUDIO_THREADS)")


def load_flags(parser: argparse.ArgumentParser) -> None:
    """How a command loads its model: device, precision, threads, and the two switches for untrusted folders."""
    parser.add_argument("--device", type=device, default=None, help=DEVICE_HELP)
    parser.add_argument("--dtype", default=None, choices=check.DTYPES, help=DTYPE_HELP)
    parser.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow .bin weights (pickle can run code: only for models you trust)")
    parser.add_argument("--allow-missing-weights", action="store_true",
                        help="load a model whose folder lacks weights its config asks for (they stay random)")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _checked(parse, rule, name: str):
    def convert(text: str):
        value = parse(text)
        problem = rule(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = name  # argparse names the type in some of its messages
    return convert


positive_int = _checked(_parse_int, check.positive_int, "positive_int")
non_negative_int = _checked(_parse_int, check.non_negative_int, "non_negative_int")
seed = _checked(_parse_int, check.seed, "seed")
positive_float = _checked(_parse_float, check.positive_float, "positive_float")
non_negative_float = _checked(_parse_float, check.non_negative_float, "non_negative_float")
probability = _checked(_parse_float, check.probability, "probability")
fraction_below_one = _checked(_parse_float, check.fraction_below_one, "fraction_below_one")


def non_empty(text: str) -> str:
    """A name or path that must not be empty ("" as a path means the current folder, silently)."""
    problem = check.non_empty_path(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def non_empty_path(text: str) -> Path:
    return Path(non_empty(text))


def device(text: str) -> str:
    problem = check.device(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def check_environment() -> str | None:
    """Why $MMSTUDIO_DEVICE, $MMSTUDIO_DTYPE or $MMSTUDIO_THREADS cannot be used (None: they are unset or fine).

    Checked when a command or the app starts, not when the first model loads deep inside torch."""
    for name, rule in ((DEVICE_ENV, check.device), (DTYPE_ENV, check.dtype), (THREADS_ENV, _threads_text)):
        value = os.environ.get(name)
        if value:
            problem = rule(value)
            if problem:
                return f"${name}: {problem}"
    return None


def _threads_text(text: str) -> str | None:
    return None if text.strip().isdigit() and int(text) > 0 else f"must be a positive integer, got {text!r}"


def config_from_args(cls, args: argparse.Namespace, required: tuple[str, ...], convert=None):
    """The config of type `cls` a parsed command line stands for, checked (SettingsError names the setting).

    A settings flag's dest is its field, set only when the flag is given (argparse.SUPPRESS), so the flags
    are the one mapping from the command line to the config; flags given with --config FILE replace those
    fields of the file. `convert` turns given values into field types where argparse cannot (a Task).
    """
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if convert is not None:
        given = convert(given)
    if getattr(args, "config", None) is not None:
        config = dataclasses.replace(cls.read(args.config), **given)
    else:
        missing = [name for name in required if name not in given]
        if missing:
            raise SettingsError(f"--{missing[0]}", "is required (or give --config FILE)",
                                f"the following arguments are required: "
                                f"{', '.join('--' + name for name in missing)} (or --config FILE)")
        config = cls(**given)
    config.validate()
    return config

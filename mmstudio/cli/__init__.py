"""The `mmstudio` command: no subcommand opens the desktop app, subcommands are the CLI."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import Sequence

from mmstudio import __version__
from mmstudio.cli.options import check_environment
from mmstudio.cli.selftest import run_self_test
from mmstudio.errors import MMStudioError

# Each module adds its subcommands with `register(subparsers)`; kept explicit like the model registry.
_COMMAND_MODULES = ("mmstudio.cli.infer", "mmstudio.cli.search", "mmstudio.cli.world", "mmstudio.cli.train",
                    "mmstudio.cli.evaluate", "mmstudio.cli.recipe", "mmstudio.cli.duplicates", "mmstudio.cli.map")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="mmstudio",
        description="A desktop studio for image multimodal models. Without a command it opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"mmstudio {__version__}")
    parser.add_argument("--self-test", action="store_true", help="check the installation end to end and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `mmstudio IMAGE...` opens the app with those images: anything that is not a command or a flag.
    commands = _command_names(parser)
    if not argv or (argv[0] not in commands and not argv[0].startswith("-")):
        mistyped = _mistyped_command(argv[0], commands) if argv else None
        if mistyped:
            print(f"mmstudio: error: {mistyped}", file=sys.stderr)
            return 2
        return _open_app(argv)
    args = parser.parse_args(argv)
    if not _environment_ok():
        return 2
    if args.self_test:
        return run_self_test()
    if args.command is None:
        return _open_app([])
    try:
        return int(args.run(args) or 0)
    except MMStudioError as exc:
        print(f"mmstudio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmstudio: interrupted", file=sys.stderr)
        return 130


def _mistyped_command(word: str, commands: set[str]) -> str | None:
    """Why `word` is taken for a mistyped command rather than an image to open (None: it is not).

    A bare word (no folder, no extension) that names no file is a typo of a command, not an image path.
    """
    if os.path.exists(word) or os.sep in word or "." in word:
        return None
    close = difflib.get_close_matches(word, sorted(commands), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no command or file {word!r}; {hint}see mmstudio --help"


def _environment_ok() -> bool:
    """A mistyped $MMSTUDIO_DEVICE/$MMSTUDIO_DTYPE is one line now, not a torch traceback at the first model."""
    problem = check_environment()
    if problem:
        print(f"mmstudio: error: {problem}", file=sys.stderr)
    return problem is None


def _no_display() -> str | None:
    """Why the window cannot open here (None: it can): Qt would abort with a core dump instead."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] not in (
            "", "xcb", "wayland"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); "
            "the commands work without one: mmstudio --help")


def _open_app(images: list[str]) -> int:
    if not _environment_ok():
        return 2
    problem = _no_display()
    if problem:
        print(f"mmstudio: error: {problem}", file=sys.stderr)
        return 2
    try:
        from mmstudio.gui.app import run_app
    except ImportError as exc:
        print(f"mmstudio: the desktop app cannot start here ({exc}). The CLI commands work: mmstudio --help",
              file=sys.stderr)
        return 2
    return run_app(images)

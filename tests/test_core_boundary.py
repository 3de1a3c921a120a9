"""The core never imports Qt: only mmstudio/gui may (napari's rule, checked)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import mmstudio


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(mmstudio.__path__, prefix="mmstudio."):
        if info.name == "mmstudio.gui" or info.name.startswith("mmstudio.gui."):
            continue
        names.append(info.name)
    return names


def test_there_are_core_modules():
    assert {"mmstudio.engine", "mmstudio.imaging", "mmstudio.models.blip", "mmstudio.training.run"} <= set(
        core_modules())


def test_importing_every_core_module_leaves_qt_out():
    code = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "leaks = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'PyQt5', 'PyQt6'))\n"
        "print(','.join(leaks))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_cli_help_does_not_import_torch_or_qt():
    code = (
        "import sys\n"
        "from mmstudio.cli import build_parser\n"
        "build_parser()\n"
        "print(','.join(sorted(m for m in ('torch', 'transformers', 'PySide6') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_layer_contracts_name_every_core_module():
    """A new top-level module must be placed in pyproject's import-linter contracts, or it escapes them."""
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    contracts = {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}
    core = next(c for name, c in contracts.items() if name.startswith("The core never imports the GUI"))
    top_level = {info.name for info in pkgutil.iter_modules(mmstudio.__path__, prefix="mmstudio.")}
    assert set(core["source_modules"]) == top_level - {"mmstudio.gui", "mmstudio.cli", "mmstudio.__main__"}


def test_lint_imports_keeps_every_contract():
    from pathlib import Path

    import pytest

    tool = Path(sys.executable).parent / "lint-imports"
    if not tool.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    out = subprocess.run([str(tool)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stdout[-3000:]


# Modules that import torch (or Qt) when imported: loading them inside the function that needs them keeps
# `mmstudio --help`, the CLI's start and the window's first paint fast. Every other own import is at the top.
LAZY_ALLOWED = {"mmstudio.training.objectives", "mmstudio.training.vocabulary", "mmstudio.training.grounding",
                "mmstudio.models.quantize", "mmstudio.models.cpu_bf16",
                "mmstudio.gui.app", "mmstudio.gui.selfcheck", "mmstudio.gui.main_window",
                "mmstudio.gui.qt_startup_trace"}


def test_own_modules_are_imported_at_module_level():
    import ast
    from pathlib import Path

    root = Path(mmstudio.__file__).parent
    lazy = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("mmstudio"):
                    modules = [inner.module]
                elif isinstance(inner, ast.Import):
                    modules = [a.name for a in inner.names if a.name.startswith("mmstudio")]
                else:
                    continue
                lazy += [f"{path.relative_to(root.parent)}:{inner.lineno} {m}" for m in modules
                         if m not in LAZY_ALLOWED]
    assert not lazy, "import these at the top of the module:\n" + "\n".join(lazy)

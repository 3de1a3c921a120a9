"""The launch-time background import that the app starts before building its window."""

from __future__ import annotations

import subprocess
import sys


def test_wait_returns_once_the_started_imports_are_done():
    # A fresh interpreter: the preload starts once per process.
    code = ("import sys; from mmstudio import preload; preload.wait(); "
            "preload.start(('colorsys', 'no_such_module_xyz', 'wave')); preload.start(('fractions',)); "
            "preload.wait(); print('colorsys' in sys.modules, 'wave' in sys.modules, 'fractions' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    # A module that fails to import ends the preload quietly (the worker meets the error itself);
    # the second start does nothing.
    assert out.stdout.split() == ["True", "False", "False"]

"""The window's event loop never stalls for long during everyday work (tests/stall_watch.py).

bench/gui_stall.py measures the 50 ms goal on 1,000 images with the built-in models; here a
small collection and a loose bound, so a busy CI machine does not fail it by chance.
"""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402

from mmstudio.gui.main_window import MainWindow  # noqa: E402
from mmstudio.gui.qt_settings import Settings  # noqa: E402
from mmstudio.jobs import JobStore  # noqa: E402
from tests.stall_watch import make_collection, run_scenarios, table  # noqa: E402

# Ten times the goal: what a scheduler hiccup on a loaded 2-core machine may add, far below the
# seconds that work on the GUI thread (a dataset check, a model load) used to take.
BOUND_MS = 500


@pytest.mark.slow
def test_no_scenario_stalls_the_window(qtbot, tmp_path, monkeypatch, tiny_models):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    for task, path in tiny_models.items():
        settings.set(f"model/{task.value}", str(path))
    window = MainWindow(settings=settings, job_store=JobStore(tmp_path / "jobs.json"))
    qtbot.addWidget(window)
    window.show()
    collection = make_collection(tmp_path, 24, size=64, workers=1)
    stalls = run_scenarios(window, collection, tmp_path, timeout_s=300)
    window.client.stop()
    print(table(stalls))
    assert len(stalls) == 8
    # Start-up holds the GIL while torch's shared library loads (about 0.3 s here): measured, not bounded.
    for stall in stalls[1:]:
        assert stall.longest < BOUND_MS, table(stalls)

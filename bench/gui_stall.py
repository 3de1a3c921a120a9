"""How long the window's event loop ever stalls during everyday work, with the built-in models.

    python bench/gui_stall.py [--images 1000] [--goal-ms 50]

Drives the real main window offscreen (tests/stall_watch.py) through: opening a folder of
N Shapes World scenes, Caption all, Check data on an N-row dataset, launching a fine-tuning
job and stopping it once it trains, searching the N images, and switching the caption model
(to the job's result and back). A 5 ms heartbeat timer on the GUI thread records the gaps
in the event loop; the table gives the longest per scenario. Settings, jobs and search
indexes go to a temporary folder, deleted at the end. Exits 1 if a gap after start-up
exceeds the goal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="scenes in the folder and rows in the dataset")
    parser.add_argument("--goal-ms", type=float, default=50.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmstudio-gui-stall-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    sys.path.insert(0, str(ROOT))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from mmstudio.gui.main_window import MainWindow
    from mmstudio.gui.qt_settings import Settings
    from mmstudio.jobs import JobStore
    from tests.stall_watch import make_collection, run_scenarios, table

    app = QApplication.instance() or QApplication([])
    collection = make_collection(work, args.images)
    settings = Settings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings=settings, job_store=JobStore(work / "jobs.json"))
    window.resize(1360, 820)
    window.show()
    app.processEvents()
    try:
        stalls = run_scenarios(window, collection, work)
    finally:
        window.close()
        app.processEvents()
    print(f"{args.images} images and dataset rows, built-in models, {os.cpu_count()} cores, "
          f"QT_QPA_PLATFORM={os.environ['QT_QPA_PLATFORM']}")
    print(table(stalls))
    # The goal is for the window at work; start-up is shown for what it is (torch's shared library loads
    # holding the GIL), but it is not one of the scenarios the goal is about.
    worst = max(s.longest for s in stalls[1:])
    print(f"longest gap after start-up {worst:.0f} ms; goal {args.goal_ms:.0f} ms: "
          f"{'met' if worst <= args.goal_ms else 'NOT met'}")
    return 0 if worst <= args.goal_ms else 1


if __name__ == "__main__":
    sys.exit(main())

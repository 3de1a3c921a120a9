"""Screenshots of the app for the README, taken from a real X server (Xvfb).

    python docs/make_screenshots.py [--out docs/screenshots]

Starts Xvfb, runs the app on a Shapes World scene with the built-in models,
drives each panel (caption with an overlay, ask, match, a short
fine-tuning job in the train panel) and captures the whole
screen with ImageMagick's `import -window root`. Needs Debian's xvfb and
imagemagick.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DISPLAY = ":97"
SCREEN = "1400x860x24"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "screenshots")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return drive_app(args.out)
    for tool in ("Xvfb", "import"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install xvfb imagemagick", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(["Xvfb", DISPLAY, "-screen", "0", SCREEN, "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        env = {**os.environ, "DISPLAY": DISPLAY, "QT_QPA_PLATFORM": "xcb"}
        return subprocess.call([sys.executable, __file__, "--child", "--out", str(args.out)], env=env)
    finally:
        server.terminate()
        server.wait(10)


def grab(path: Path) -> None:
    subprocess.run(["import", "-display", DISPLAY, "-window", "root", str(path)], check=True)
    print(f"wrote {path}")


def drive_app(out: Path) -> int:
    import numpy as np
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from mmstudio.gui.main_window import MainWindow
    from mmstudio.gui.qt_settings import Settings
    from mmstudio.world import render_scene, sample_scene

    app = QApplication([sys.argv[0]])
    folder = Path(tempfile.mkdtemp())
    scene = sample_scene(np.random.default_rng(2024), size=224, n_objects=3)
    image_path = folder / "scene.png"
    render_scene(scene).save(image_path)
    settings = Settings(QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat))
    from mmstudio.jobs import JobStore

    window = MainWindow(settings=settings, job_store=JobStore(Path(folder) / "jobs.json"))
    window.setGeometry(0, 0, 1400, 860)
    window.show()
    window.add_paths([str(image_path)])

    def pump(seconds: float, until=lambda: False) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            app.processEvents()
            time.sleep(0.02)
        app.processEvents()

    key = str(image_path.resolve())
    pump(120, lambda: key in window.caption_panel.results)
    result = window.caption_panel.results[key]
    colors = {"red", "green", "blue", "yellow", "purple", "orange"}
    word = next((i for i, t in enumerate(result.tokens) if t in colors), 0)
    window.caption_panel.select_token(word)
    pump(1)
    grab(out / "caption.png")

    window.tabs.setCurrentWidget(window.ask_panel)
    for question in ("how many objects are there?", "what color is the leftmost object?",
                     "what shape is the rightmost object?"):
        window.ask_panel.input.setPlainText(question)
        window.ask_panel.send()
        pump(60, lambda: all(t.result or t.error for t in window.ask_panel.history.get(key, [])))
    pump(1)
    grab(out / "ask.png")

    window.tabs.setCurrentWidget(window.match_panel)
    truth = result.caption
    words = truth.split()
    wrong_color = next(c for c in sorted(colors) if c not in words)
    window.match_panel.set_texts([truth, truth.replace(words[2], wrong_color, 1),
                                  " and ".join(reversed(truth.split(" and "))), "a large red circle"])
    pump(60, lambda: key in window.match_panel.results)
    window.match_panel.select_text(truth)
    pump(1)
    grab(out / "match.png")

    # A real short job from the Train panel: fine-tune the built-in caption model, with an eval set.
    from mmstudio.models.base import Task
    from mmstudio.world import generate_dataset

    panel = window.train_panel
    window.tabs.setCurrentWidget(panel)
    panel.task.setCurrentIndex(panel.task.findData(Task.CAPTION))
    panel.data.setText(str(generate_dataset(folder / "train", 256, seed=31, workers=2)))
    panel.eval_data.setText(str(generate_dataset(folder / "eval", 32, seed=32)))
    panel.eval_every.setValue(20)
    panel.steps.setValue(100)
    panel.batch.setValue(16)
    panel.out.setText(str(folder / "run"))
    launching = panel.launch()
    pump(120, lambda: launching.done)
    record = panel.selected()
    pump(900, lambda: record.status != "running" and record.id not in panel.processes)
    pump(1)
    grab(out / "train.png")
    window.close()
    app.processEvents()
    shutil.rmtree(folder, ignore_errors=True)  # the scenes and the job's run: about 110 MB
    return 0


if __name__ == "__main__":
    sys.exit(main())

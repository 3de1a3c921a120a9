"""Screenshots of the app for the README, taken from a real X server (Xvfb).

    python docs/make_screenshots.py [--out docs/screenshots] [--all-out DIR] [--only generation,models,...]

Starts Xvfb, runs the app on a Shapes World scene with the built-in models,
drives each panel (caption with an overlay, ask, match, a short
fine-tuning job in the train panel) and captures the window with ImageMagick's
`import -window root`. The README's four images (`--out`) are taken at
1600x1000; every view (the welcome screen and each tab) is also taken at the
smallest supported size, 1000x700, and at 1600x1000 into `--all-out` (default:
a new folder under /tmp, printed at the end), to be looked at for clipping and
overlaps. Needs Debian's xvfb and imagemagick.
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
SCREEN = "1600x1000x24"
SIZES = ((1000, 700), (1600, 1000))  # the smallest supported window, and a common large one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "screenshots")
    parser.add_argument("--all-out", type=Path, default=None, help="every view at every size (default: /tmp/...)")
    parser.add_argument("--only", default="", help="comma-separated views to take (default: all); e.g. models")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return drive_app(args.out, args.all_out, {v for v in args.only.split(",") if v})
    for tool in ("Xvfb", "import"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install xvfb imagemagick", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    args.all_out = args.all_out or Path(tempfile.mkdtemp(prefix="mmstudio-screens-"))
    args.all_out.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(["Xvfb", DISPLAY, "-screen", "0", SCREEN, "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        env = {**os.environ, "DISPLAY": DISPLAY, "QT_QPA_PLATFORM": "xcb"}
        code = subprocess.call([sys.executable, __file__, "--child", "--out", str(args.out),
                                "--all-out", str(args.all_out), "--only", args.only], env=env)
        print(f"every view at {', '.join(f'{w}x{h}' for w, h in SIZES)}: {args.all_out}")
        return code
    finally:
        server.terminate()
        server.wait(10)


def grab(path: Path, size: tuple[int, int] | None = None) -> None:
    crop = ["-crop", f"{size[0]}x{size[1]}+0+0", "+repage"] if size else []
    subprocess.run(["import", "-display", DISPLAY, "-window", "root", *crop, str(path)], check=True)
    print(f"wrote {path}")


def drive_app(out: Path, all_out: Path, only: set[str]) -> int:
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
    window.setGeometry(0, 0, *SIZES[-1])
    window.show()

    def pump(seconds: float, until=lambda: False) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            app.processEvents()
            time.sleep(0.02)
        app.processEvents()

    def grab_all(name: str, readme: bool = True) -> None:
        """The view at every size (for looking), and at the last size for the README."""
        if only and name not in only:
            return
        for width, height in SIZES:
            window.setGeometry(0, 0, width, height)
            pump(1)
            grab(all_out / f"{name}-{width}x{height}.png", (width, height))
        if readme:
            grab(out / f"{name}.png", SIZES[-1])

    pump(1)
    grab_all("welcome", readme=False)
    window.add_paths([str(image_path)])

    key = str(image_path.resolve())
    pump(120, lambda: key in window.caption_panel.results)
    result = window.caption_panel.results[key]
    colors = {"red", "green", "blue", "yellow", "purple", "orange"}
    word = next((i for i, t in enumerate(result.tokens) if t in colors), 0)
    window.caption_panel.select_token(word)
    pump(1)
    grab_all("caption")
    # The Generation section open, with a prompt and beams: the caption is made again with them.
    generation = window.caption_panel.generation
    generation.toggle.setChecked(True)
    generation.prompt.setText("a large")
    generation.beams.setValue(3)
    before = window.caption_panel.results.get(key)
    pump(60, lambda: window.caption_panel.results.get(key) not in (None, before))
    pump(1)
    grab_all("generation", readme=False)
    generation.clear()
    generation.toggle.setChecked(False)
    changed = window.caption_panel.results.get(key)
    pump(30, lambda: window.caption_panel.results.get(key) not in (None, changed))

    window.tabs.setCurrentWidget(window.ask_panel)
    for question in ("how many objects are there?", "what color is the leftmost object?",
                     "what shape is the rightmost object?"):
        window.ask_panel.input.setPlainText(question)
        window.ask_panel.send()
        pump(60, lambda: all(t.result or t.error for t in window.ask_panel.history.get(key, [])))
    pump(1)
    grab_all("ask")
    # What the models know: an object the scene lacks, words outside the vocabulary, a form it never learned.
    absent = next(s for s in ("star", "triangle", "square", "circle") if s not in result.caption)
    present = next(s for s in ("star", "triangle", "square", "circle") if s in result.caption)
    for question in (f"what color is the {absent}?", "is this a photo of a sunset?", f"is there a {present}?"):
        window.ask_panel.input.setPlainText(question)
        window.ask_panel.send()
        pump(60, lambda: all(t.result or t.error for t in window.ask_panel.history.get(key, [])))
    pump(1)
    grab_all("ask-limits", readme=False)
    if not only or "ask-chat" in only:
        _ask_chat(window, key, pump)
        grab_all("ask-chat", readme=False)

    window.tabs.setCurrentWidget(window.match_panel)
    truth = result.caption
    words = truth.split()
    wrong_color = next(c for c in sorted(colors) if c not in words)
    window.match_panel.set_texts([truth, truth.replace(words[2], wrong_color, 1),
                                  " and ".join(reversed(truth.split(" and "))), "a large red circle"])
    pump(60, lambda: key in window.match_panel.results)
    window.match_panel.select_text(truth)
    pump(1)
    grab_all("match")

    # A real short job from the Train panel (the slowest view: --only without "train" skips it).
    if not only or "train" in only:
        _train(window, folder, pump)
        grab_all("train")
    # A picture from outside Shapes World: a sky, hills and a sun, drawn here. The banner says so.
    from PIL import Image, ImageDraw

    photo = Image.new("RGB", (320, 240), (90, 140, 210))
    draw = ImageDraw.Draw(photo)
    for y in range(240):
        draw.line([(0, y), (320, y)], fill=(90 + y // 3, 140 + y // 4, 210 - y // 2))
    draw.ellipse([230, 30, 280, 80], fill=(250, 220, 120))
    draw.polygon([(0, 170), (90, 120), (180, 160), (260, 110), (320, 150), (320, 240), (0, 240)], fill=(60, 110, 50))
    photo_path = folder / "landscape.png"
    photo.save(photo_path)
    window.tabs.setCurrentWidget(window.caption_panel)
    window.add_paths([str(photo_path)])
    photo_key = str(photo_path.resolve())
    pump(120, lambda: photo_key in window.caption_panel.results)
    pump(2)
    grab_all("out-of-world", readme=False)
    window.tabs.setCurrentWidget(window.search_panel)
    window.search_panel.query.setText("a large green circle")
    window.search_panel.search()
    pump(120, lambda: bool(window.search_panel.hits))
    grab_all("search", readme=False)
    if not only or "explore" in only:
        _explore(window, folder, pump)
        grab_all("explore", readme=False)
        if _explore_umap(window, pump):
            grab_all("explore-umap", readme=False)
    if not only or "duplicates" in only:
        _duplicates(window, folder, pump)
        grab_all("duplicates", readme=False)
    if not only or "models" in only:
        _model_dialog(window, folder, pump, grab_all)
    window.close()
    app.processEvents()
    shutil.rmtree(folder, ignore_errors=True)  # the scenes and the job's run: about 110 MB
    return 0


EXPLORE_SCENES = 5000


def _ask_chat(window, key: str, pump) -> None:
    """The built-in chat model in the Ask panel: a conversation, and a word of its description clicked, its
    map on the picture."""
    from PySide6.QtCore import QUrl

    from mmstudio.models.base import Task

    ticket = window.load_model(Task.VQA, "builtin:chat")
    done = []
    ticket.ended.connect(lambda: done.append(True))
    pump(60, lambda: bool(done))
    panel = window.ask_panel
    window.tabs.setCurrentWidget(panel)
    turns = panel.history.get(key, [])
    start = len(turns)
    for question in ("Describe this image.", "what color is the rightmost object?", "how many objects are there?"):
        panel.input.setPlainText(question)
        panel.send()
        pump(60, lambda: all(t.result or t.error for t in panel.history.get(key, [])))
    described = panel.history[key][start].result
    shapes = {"circle", "square", "triangle", "star"}
    word = next((i for i, t in enumerate(described.answer_tokens) if t in shapes), 0)
    panel._on_link(QUrl(f"w:{start}:{word}"))
    pump(1)


def _explore(window, folder: Path, pump) -> None:
    """5,000 scenes on the map, "a small red circle" placed among them, coloured by the shape word "star"
    of their captions (Caption all first)."""
    from mmstudio.world import generate_dataset

    scenes = folder / "explore"
    generate_dataset(scenes, EXPLORE_SCENES, seed=31)
    window.add_paths([str(scenes / "images")])
    pump(300, lambda: len(window.gallery.refs(loaded_only=False)) >= EXPLORE_SCENES)
    panel = window.explore_panel
    window.tabs.setCurrentWidget(panel)
    panel.query.setText("a small red circle")
    panel.draw_map(panel.query.text())
    pump(300, lambda: panel.outcome is not None)
    window.caption_panel.caption_all(window.gallery.refs(loaded_only=False))
    pump(900, lambda: not window.caption_panel.batch_running)
    panel.colour.setCurrentIndex(panel.colour.findData("word"))
    panel.colour_word.setText("star")
    pump(1)


def _explore_umap(window, pump) -> bool:
    """The same map laid out by UMAP (where umap-learn is installed), coloured by k-means group."""
    from mmstudio.embedding_map import umap_available

    if not umap_available():
        return False
    panel = window.explore_panel
    panel.colour.setCurrentIndex(panel.colour.findData("cluster"))
    panel.method.setCurrentIndex(panel.method.findData("umap"))
    pump(600, lambda: panel.outcome is not None and panel.outcome.umap is not None)
    pump(1)
    return True


def _duplicates(window, folder: Path, pump) -> None:
    """Three scenes, two landscapes and a text page with their copies (resized, JPEG 40, 90 % crop), and others."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.test_duplicates import copy_set

    pictures = folder / "duplicates"
    pictures.mkdir()
    copy_set(pictures, originals=6, unrelated=8, seed=3)
    panel = window.duplicates_panel
    window.tabs.setCurrentWidget(panel)
    panel.find_in_folder(str(pictures))
    pump(120, lambda: panel.scan is not None)
    pump(1)


def _train(window, folder: Path, pump) -> None:
    """Fine-tune the built-in caption model from the Train panel, with an eval set."""
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


def _model_dialog(window, folder: Path, pump, grab_all) -> None:
    """The model dialog's catalog: one model cached, one downloading from a local stand-in for the hub."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mmstudio.gui.qt_model_dialog import ModelDialog
    from mmstudio.models import hub
    from mmstudio.resources import builtin_models_dir
    from tests.hub_server import HubServer

    os.environ.update(HF_HUB_CACHE=str(folder / "hf-cache"), NO_PROXY="127.0.0.1,localhost")
    os.environ.pop("HF_HUB_OFFLINE", None)
    with HubServer() as server:
        # The built-in caption model stands in for both captioners (the real ones are 1-2 GB, out of reach here).
        server.add_folder("Salesforce/blip-image-captioning-large", builtin_models_dir() / "caption")
        server.add_folder("Salesforce/blip-image-captioning-base", builtin_models_dir() / "caption")
        os.environ["HF_ENDPOINT"] = server.url
        hub.download("Salesforce/blip-image-captioning-large")
        server.delay = 0.05  # about 1 MB/s: a download to watch
        dialog = ModelDialog(window.models, window.options, window, client=window.client)
        dialog.show()
        dialog.move(window.x() + 40, window.y() + 30)
        dialog.catalog.select("Salesforce/blip-image-captioning-base")
        dialog.catalog.download_selected()
        pump(30, lambda: "MB/s" in dialog.catalog.status.text() and dialog.catalog.progress.value() > 150)
        grab_all("models", readme=False)
        dialog.catalog.cancel()
        pump(30, lambda: dialog.catalog.downloading is None)
        dialog.reject()


if __name__ == "__main__":
    sys.exit(main())

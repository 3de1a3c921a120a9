"""The real window and the real worker, offscreen, driven like a person would."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytestqt = pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from mmstudio.cli import main as cli_main  # noqa: E402
from mmstudio.errors import DatasetError  # noqa: E402
from mmstudio.gui.main_window import MainWindow  # noqa: E402
from mmstudio.gui.qt_settings import Settings  # noqa: E402
from mmstudio.models.base import Task  # noqa: E402

TIMEOUT = 60000


def cli(capsys, *argv) -> dict:
    import json

    cli_main(list(argv))
    return json.loads(capsys.readouterr().out.splitlines()[0])


def drop_scenes(qtbot, window, folder, scene_images, count: int) -> list:
    """Save `count` scenes in `folder`, drop them on the gallery and wait until they are decoded; their paths."""
    paths = []
    for i in range(count):
        paths.append(folder / f"scene-{i}.png")
        scene_images[i % len(scene_images)].save(paths[-1])
    drop_files(window.gallery, paths)
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == count, timeout=TIMEOUT)
    return paths


def drop_files(widget, paths) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(event)


@pytest.fixture()
def scene_file(tmp_path, scene_images):
    path = tmp_path / "scene.png"
    scene_images[0].save(path)
    return path


def wait_caption(qtbot, window, key):
    qtbot.waitUntil(lambda: bool(key in window.caption_panel.results or key in window.caption_panel.errors),
                    timeout=TIMEOUT)


def test_first_screen_invites_a_drop(window):
    assert window.stack.currentWidget() is window.welcome_page
    assert "Drop images here" in window.welcome.text()


def test_drop_an_image_and_see_its_caption(qtbot, window, scene_file, capsys, models):
    drop_files(window.gallery, [scene_file])
    key = str(scene_file.resolve())
    wait_caption(qtbot, window, key)
    result = window.caption_panel.results[key]
    assert result.caption == cli(capsys, "caption", "--json", "--model", models[Task.CAPTION],
                                 str(scene_file))["caption"]
    assert window.stack.currentWidget() is window.view
    assert "scene.png" in window.windowTitle()


def test_click_a_caption_word_changes_the_overlay(qtbot, window, scene_file):
    drop_files(window, [scene_file])
    wait_caption(qtbot, window, str(scene_file.resolve()))
    result = window.caption_panel.current_result()
    assert len(result.tokens) >= 4
    window.caption_panel.select_token(2)
    first = window.view.overlay_map.copy()
    window.caption_panel.select_token(3)
    second = window.view.overlay_map
    assert first.shape == second.shape == result.attention.grid
    assert (first != second).any()
    assert "“" in window.controls.label.text()


def test_ask_gives_the_cli_answer(qtbot, window, scene_file, capsys, models):
    drop_files(window.gallery, [scene_file])
    qtbot.waitUntil(lambda: bool(window.gallery.refs()), timeout=TIMEOUT)  # listed and decoded
    window.tabs.setCurrentWidget(window.ask_panel)
    window.ask_panel.input.setPlainText("how many objects are there?")
    qtbot.keyClick(window.ask_panel.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    key = window.gallery.current_ref().key
    qtbot.waitUntil(lambda: bool(window.ask_panel.history.get(key)) and bool(window.ask_panel.history[key][-1].result),
                    timeout=TIMEOUT)
    answer = window.ask_panel.history[key][-1].result.answer
    assert answer == cli(capsys, "ask", "--json", "--model", models[Task.VQA], str(scene_file),
                         "how many objects are there?")["answer"]


def test_cancel_a_batch(qtbot, window, tmp_path, scene_images):
    paths = []
    for i in range(40):
        path = tmp_path / f"img{i:02d}.png"
        scene_images[i % len(scene_images)].rotate(i).save(path)
        paths.append(path)
    window.gallery.add_paths(paths)
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == 40, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not window.client.busy, timeout=TIMEOUT)
    window.caption_panel.results.clear()
    window.caption_panel.caption_all(window.gallery.refs())
    assert window.caption_panel.cancel_button.isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.caption_panel.cancel_button.isEnabled(), timeout=TIMEOUT)
    assert "Cancelled after " in window.caption_panel.status.text() and " of 40 images." in \
        window.caption_panel.status.text()
    assert len(window.caption_panel.results) < 40
    assert window.caption_panel.all_button.isEnabled()


def test_bad_drops_show_errors_and_the_app_stays_up(qtbot, window, tmp_path, scene_file):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(scene_file.read_bytes()[:200])
    drop_files(window.gallery, [text])
    qtbot.waitUntil(lambda: window.message_bar.isVisible(), timeout=TIMEOUT)
    assert "notes.txt" in window.message_bar.label.text()
    window.message_bar.hide()
    drop_files(window.gallery, [truncated])
    qtbot.waitUntil(lambda: window.message_bar.isVisible(), timeout=TIMEOUT)
    assert "broken.png" in window.message_bar.label.text()
    assert window.gallery.count() == 0
    window.message_bar.hide()
    drop_files(window.gallery, [text, truncated])  # several at once: every one is named, not only the last
    qtbot.waitUntil(lambda: "2 files could not be opened" in window.message_bar.label.text(), timeout=TIMEOUT)
    assert "notes.txt" in window.message_bar.label.text() and "broken.png" in window.message_bar.label.text()
    drop_files(window.gallery, [scene_file])
    wait_caption(qtbot, window, str(scene_file.resolve()))


def test_failed_model_load_keeps_the_previous_model(qtbot, window, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    qtbot.waitUntil(lambda: not window.model_loads, timeout=TIMEOUT)
    before = window.models[Task.CAPTION]
    ticket = window.load_model(Task.CAPTION, str(broken))
    qtbot.waitUntil(lambda: ticket.done, timeout=TIMEOUT)
    assert ticket.error is not None
    assert window.models[Task.CAPTION] == before
    assert "Still using" in window.message_bar.label.text() and ".." not in window.message_bar.label.text()
    window.load_model(Task.CAPTION, before)  # a model that loads: the failure's message goes
    qtbot.waitUntil(lambda: not window.model_loads, timeout=TIMEOUT)
    assert not window.message_bar.isVisible()


def test_corrupt_settings_mean_defaults(qtbot, tmp_path):
    path = tmp_path / "bad.ini"
    path.write_bytes(b"\x00\xff[overlay]\nopacity=lots\ncolormap=\xff\xfe\n[window]\ngeometry=garbage\n")
    settings = Settings(QSettings(str(path), QSettings.Format.IniFormat))
    from mmstudio.jobs import JobStore

    win = MainWindow(settings=settings, job_store=JobStore(tmp_path / "jobs.json"))
    qtbot.addWidget(win)
    assert 0 <= win.controls.opacity.value() <= 100
    win.client.stop()


@pytest.mark.slow
def test_train_panel_launch_progress_stop_and_load(qtbot, window, tmp_path):
    from mmstudio.world import generate_dataset

    data = generate_dataset(tmp_path / "data", 16, seed=2, size=96)
    held_out = generate_dataset(tmp_path / "eval", 8, seed=3, size=96)
    panel = window.train_panel
    window.tabs.setCurrentWidget(panel)
    panel.task.setCurrentIndex(panel.task.findData(Task.CAPTION))
    panel.base.setCurrentIndex(panel.base.findData("scratch"))
    panel.data.setText(str(data))
    panel.eval_data.setText(str(held_out))
    panel.steps.setValue(400)
    panel.batch.setValue(4)
    panel.out.setText(str(tmp_path / "run"))
    checking = panel.check()
    assert not panel.check_button.isEnabled()  # the check runs off the GUI thread; the panel shows it
    qtbot.waitUntil(lambda: checking.done, timeout=TIMEOUT)
    assert checking.error is None and "Data is valid" in panel.report.text()
    launching = panel.launch()
    qtbot.waitUntil(lambda: launching.done, timeout=TIMEOUT)
    record = panel.selected()
    assert launching.error is None and record is not None and record.id in panel.processes
    qtbot.waitUntil(lambda: len(record.curve) >= 3, timeout=180000)
    assert panel.progress.maximum() == 400 and panel.progress.value() >= 3
    assert panel.stop_button.isEnabled()
    panel.stop_button.click()
    qtbot.waitUntil(lambda: record.id not in panel.processes, timeout=120000)  # the process has ended
    assert record.status == "stopped"
    assert record.latest_checkpoint is not None
    assert record.evals and record.evals[-1]["eval_loss"] > 0  # evaluated on the way out
    assert panel.curve.eval_points and len(panel.curve.points) >= 3
    assert panel.use_button.isEnabled() and panel.resume_button.isEnabled()
    panel.use_button.click()
    qtbot.waitUntil(lambda: window.models[Task.CAPTION] == str(tmp_path / "run"), timeout=TIMEOUT)
    panel.base.setCurrentIndex(panel.base.findData("loaded"))  # the next job can start from the new model
    assert panel.config().base == str(tmp_path / "run")
    assert "run" in panel.base.currentText()


def test_train_panel_advanced_fields_reach_the_config(qtbot, window, tmp_path):
    """The settings a job could not carry before issue 17, set in the Advanced section, are in the config."""
    window.resize(1000, 700)
    panel = window.train_panel
    window.tabs.setCurrentWidget(panel)
    panel.data.setText(str(tmp_path / "data"))
    assert not panel.advanced.isVisible()
    qtbot.mouseClick(panel.advanced_toggle, Qt.MouseButton.LeftButton)
    assert panel.advanced.isVisible()
    panel.steps.setValue(0)  # "from epochs"
    panel.epochs.setValue(3.5)
    panel.weight_decay.setValue(0.01)
    panel.questions.setValue(2)
    panel.negatives.setValue(3)
    panel.order_share.setValue(0.25)
    panel.partial_share.setValue(0.5)
    panel.rows.setValue(40)
    panel.pixel_cache.setText(str(tmp_path / "pixels"))
    panel.bf16.setCurrentText("off")
    panel.grounding.setCurrentText("on")
    panel.scratch_size.setCurrentText("tiny")
    panel.max_minutes.setValue(2.5)
    panel.save_every.setValue(11)
    config = panel.config()
    assert (config.steps, config.epochs, config.weight_decay, config.questions_per_image,
            config.negatives_per_image, config.order_share, config.partial_share, config.rows, config.pixel_cache,
            config.bf16, config.grounding, config.size, config.max_minutes, config.save_every) == (
        None, 3.5, 0.01, 2, 3, 0.25, 0.5, 40, tmp_path / "pixels", False, True, "tiny", 2.5, 11)
    panel.rows.setValue(0)
    panel.bf16.setCurrentText("auto")
    assert (panel.config().rows, panel.config().bf16) == (None, None)  # "all" and "auto" are unset


def test_train_panel_loads_and_saves_a_config_with_every_field(qtbot, window, tmp_path):
    from mmstudio.training.config import TrainConfig
    from tests.train_configs import every_field_changed

    config = every_field_changed(tmp_path)
    config.write(tmp_path / "in.json")
    panel = window.train_panel
    assert panel.load_config_file(tmp_path / "in.json") == config
    assert panel.advanced_toggle.isChecked() and not panel.advanced.isHidden() and panel.config() == config
    assert TrainConfig.read(panel.save_config_file(tmp_path / "out.json")) == config
    (tmp_path / "newer.json").write_text((tmp_path / "in.json").read_text().replace('"version": 1', '"version": 2'))
    assert panel.load_config_file(tmp_path / "newer.json") is None
    assert "version is 2, newer" in panel.report.text()


def test_generate_shapes_world_data_with_new_concepts(qtbot, tmp_path):
    from mmstudio.gui.qt_generate_dialog import GenerateDataDialog
    from mmstudio.training.data import read_dataset

    dialog = GenerateDataDialog(tmp_path / "new", None)
    qtbot.addWidget(dialog)
    dialog.count.setValue(12)
    dialog.new_concepts.setChecked(True)
    dialog.start()  # a real `mmstudio world generate` subprocess
    qtbot.waitUntil(lambda: dialog.folder is not None or dialog.generate_button.isEnabled(), timeout=120000)
    assert dialog.folder == tmp_path / "new", dialog.status.text()
    assert len(read_dataset(dialog.folder, Task.CAPTION).examples) == 12


def test_failed_generation_says_why_and_can_be_tried_again(qtbot, tmp_path):
    from mmstudio.gui.qt_generate_dialog import GenerateDataDialog

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dialog = GenerateDataDialog(blocker / "data", None)
    qtbot.addWidget(dialog)
    dialog.count.setValue(2)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.generate_button.isEnabled(), timeout=120000)
    assert dialog.folder is None
    assert dialog.status.text().startswith("Generation failed: ") and len(dialog.status.text()) > 20


def test_launch_is_refused_on_invalid_data(qtbot, window, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.jsonl").write_text('{"file_name": "x.png", "caption": "a red circle"}\n')
    panel = window.train_panel
    panel.data.setText(str(tmp_path / "bad"))
    launching = panel.launch()
    qtbot.waitUntil(lambda: launching.done, timeout=TIMEOUT)
    assert isinstance(launching.error, DatasetError)
    assert "metadata.jsonl:1" in panel.report.text()
    assert panel.jobs.count() == 0


def test_teach_a_corrected_caption(qtbot, window, scene_file, tmp_path):
    drop_files(window.gallery, [scene_file])
    qtbot.waitUntil(lambda: bool(window.gallery.refs()), timeout=TIMEOUT)  # listed and decoded
    folder = tmp_path / "taught"
    ticket = window.teach(window.gallery.current_ref(), {"caption": "a small pink hexagon"}, folder=str(folder))
    qtbot.waitUntil(lambda: ticket.done, timeout=TIMEOUT)
    assert "Added to" in window.message_bar.label.text()
    rows = (folder / "metadata.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "pink hexagon" in rows[0]


def test_export_captions_and_save_an_overlay(qtbot, window, scene_file, tmp_path):
    import csv
    import json

    from PIL import Image

    drop_files(window.gallery, [scene_file])
    wait_caption(qtbot, window, str(scene_file.resolve()))
    exports = [window.caption_panel.export(tmp_path / "captions.json"),
               window.caption_panel.export(tmp_path / "captions.csv")]
    qtbot.waitUntil(lambda: all(ticket.done for ticket in exports), timeout=TIMEOUT)
    rows = json.loads((tmp_path / "captions.json").read_text())
    assert rows[0]["image"] == str(scene_file) and rows[0]["caption"]
    with (tmp_path / "captions.csv").open() as handle:
        assert next(csv.DictReader(handle))["caption"] == rows[0]["caption"]
    window.caption_panel.select_token(1)
    window.controls.layer.setCurrentIndex(window.controls.layer.count() - 1)  # one layer instead of the default
    window.controls.head.setCurrentIndex(window.controls.head.findData("max"))
    window.save_overlay(tmp_path / "overlay.png")
    saved = Image.open(tmp_path / "overlay.png")
    assert saved.size == Image.open(scene_file).size


def test_match_texts_add_edit_remove_and_gradcam(qtbot, window, scene_file):
    drop_files(window.gallery, [scene_file])
    key = str(scene_file.resolve())
    qtbot.waitUntil(lambda: bool(key in window.match_panel.results), timeout=TIMEOUT)
    panel = window.match_panel
    panel.set_texts(["a small red circle", "a large blue star"])
    panel.add_text("a small green square")
    qtbot.waitUntil(lambda: len(panel.results.get(key, [])) == 3, timeout=TIMEOUT)
    shown = [panel.table.item(r, 0).text() for r in range(3)]
    best_first = sorted(panel.results[key], key=lambda r: (r.itm, r.itc), reverse=True)
    assert shown == [r.text for r in best_first]  # best match first; ties on ITM ordered by ITC
    panel.select_text("a large blue star")
    assert "Grad-CAM" in window.controls.label.text()
    item = next(panel.table.item(r, 0) for r in range(3) if panel.table.item(r, 0).text() == "a large blue star")
    item.setText("a large blue triangle")
    assert "a large blue triangle" in panel.texts and "a large blue star" not in panel.texts
    panel.select_text("a small red circle")
    panel.remove_selected()
    assert panel.texts == ["a large blue triangle", "a small green square"]


def test_warm_up_loads_the_caption_model_and_the_startup_trace_records_the_first_caption(qtbot, settings, tmp_path,
                                                                                          scene_file, models):
    import json

    from mmstudio.gui.qt_startup_trace import StartupTrace
    from mmstudio.jobs import JobStore

    win = MainWindow(settings=settings, job_store=JobStore(tmp_path / "jobs.json"))
    qtbot.addWidget(win)
    trace = tmp_path / "trace.jsonl"
    StartupTrace(win, trace, quit_after_caption=False)
    win.show()
    win.client.warm_up(Task.CAPTION)
    qtbot.waitUntil(lambda: bool(win.client.loaded_models()), timeout=TIMEOUT)
    assert set(win.client.loaded_models()) == {models[Task.CAPTION]}
    drop_files(win.gallery, [scene_file])
    wait_caption(qtbot, win, str(scene_file.resolve()))
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "window-created" and "window-shown" in names and names[-1] == "first-caption"
    assert events[-1]["caption"] == win.caption_panel.results[str(scene_file.resolve())].caption
    assert all(e["peak_rss_mb"] > 0 for e in events)
    win.client.stop()


def test_no_empty_progress_bar_before_any_job(window):
    window.tabs.setCurrentWidget(window.train_panel)
    assert not window.train_panel.progress.isVisible()


def test_caption_all_on_an_empty_gallery_says_to_open_images(qtbot, window):
    window.caption_panel.caption_all(window.gallery.refs())
    assert "Open some images first" in window.message_bar.label.text()
    assert not window.caption_panel.batch_running


def test_the_window_opens_within_the_screen(qtbot, settings, tmp_path):
    from mmstudio.jobs import JobStore

    win = MainWindow(settings=settings, job_store=JobStore(tmp_path / "jobs.json"))  # no saved size: 1360x820
    qtbot.addWidget(win)
    free = win.screen().availableGeometry()
    assert win.height() <= free.height()
    assert win.width() <= max(free.width(), win.minimumSizeHint().width())  # as narrow as its content allows
    win.client.stop()


def test_the_first_caption_says_the_model_is_loading(qtbot, window, scene_file, models):
    started = []
    window.client.started.connect(lambda _ticket, text: started.append(text))
    drop_files(window.gallery, [scene_file])
    wait_caption(qtbot, window, str(scene_file.resolve()))
    assert any(text.startswith(f"Loading {models[Task.CAPTION]} (its first use), then captioning") for text in started)
    window.caption_panel.request_current(force=True)
    qtbot.waitUntil(lambda: not window.caption_panel.pending, timeout=TIMEOUT)
    assert started[-1] == "Captioning…"  # loaded now: no loading message


def test_the_overlay_follows_the_tab_and_the_selected_image(qtbot, window, tmp_path, scene_images):
    paths = drop_scenes(qtbot, window, tmp_path, scene_images, 2)
    window.caption_panel.caption_all(window.gallery.refs())
    keys = [str(p.resolve()) for p in paths]
    qtbot.waitUntil(lambda: all(k in window.caption_panel.results for k in keys), timeout=TIMEOUT)
    window.gallery.select_key(keys[1])  # captioned by Caption all: its map shows at once, no click needed
    qtbot.waitUntil(lambda: window.gallery.current_ref().key == keys[1], timeout=TIMEOUT)
    assert window.view.overlay_map is not None and window.controls.label.text().startswith("word")
    window.tabs.setCurrentWidget(window.match_panel)
    qtbot.waitUntil(lambda: keys[1] in window.match_panel.results, timeout=TIMEOUT)
    window.match_panel.table.selectRow(0)
    assert window.controls.label.text().startswith("Grad-CAM")
    window.tabs.setCurrentWidget(window.search_panel)  # Search has no evidence: the Grad-CAM goes
    assert window.view.overlay_map is None and window.controls.label.text() == "No attention map"
    window.tabs.setCurrentWidget(window.caption_panel)
    assert window.controls.label.text().startswith("word")


def test_caption_all_says_how_many_when_done(qtbot, window, tmp_path, scene_images):
    drop_scenes(qtbot, window, tmp_path, scene_images, 3)
    qtbot.waitUntil(lambda: not window.client.busy, timeout=TIMEOUT)
    window.caption_panel.results.clear()
    window.caption_panel.caption_all(window.gallery.refs())
    qtbot.waitUntil(lambda: not window.caption_panel.batch_running, timeout=TIMEOUT)
    qtbot.wait(200)  # the results are shown after the summary: it must still be there
    assert window.caption_panel.status.text() == "Captioned 3 images."


def test_a_long_check_report_scrolls_inside_the_panel_not_the_window(qtbot, window, tmp_path):
    bad = tmp_path / "bad40"
    bad.mkdir()
    (bad / "metadata.jsonl").write_text("".join('{"file_name": "x%d.png", "caption": "a red circle"}\n' % i
                                                for i in range(40)))
    panel = window.train_panel
    window.tabs.setCurrentWidget(panel)
    before = window.minimumSizeHint().height()
    panel.data.setText(str(bad))
    checking = panel.check()
    qtbot.waitUntil(lambda: checking.done, timeout=TIMEOUT)
    assert "metadata.jsonl:40" in panel.report.text() or "more" in panel.report.text()
    assert window.minimumSizeHint().height() <= max(before, 700)  # the window does not grow past a screen


def test_help_lists_the_shortcuts_and_the_window_says_what_the_built_in_models_know(window):
    table = dict(window.shortcut_table())
    assert table["Open images…"] == "Ctrl+O" and table["Search panel"] == "Ctrl+5" and "Keyboard shortcuts" in table
    assert "Shapes World" in window.welcome.text()


def test_the_message_bar_floats_and_a_fixed_cause_clears_its_error(qtbot, window, tmp_path):
    from mmstudio.world import generate_dataset

    splitter_top = window.tabs.mapTo(window, window.tabs.rect().topLeft()).y()
    panel = window.train_panel
    panel.data.setText("")
    assert panel.check() is None  # "Choose a dataset folder first."
    assert window.message_bar.isVisible() and window.message_bar.is_error
    assert window.tabs.mapTo(window, window.tabs.rect().topLeft()).y() == splitter_top  # nothing moved
    panel.data.setText(str(generate_dataset(tmp_path / "data", 4, seed=2, size=64)))
    checking = panel.check()
    qtbot.waitUntil(lambda: checking.done, timeout=TIMEOUT)
    assert not window.message_bar.is_error and "Data is valid" in window.message_bar.label.text()


def test_the_welcome_screen_opens_the_sample_images(qtbot, window):
    from mmstudio.resources import samples_dir

    assert len(list(samples_dir().glob("*.png"))) == 12
    window.samples_button.click()
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == 12, timeout=TIMEOUT)
    assert window.stack.currentWidget() is window.view
    assert window.gallery.current_ref().path.name == "scene-01.png"


def test_a_model_loading_message_counts_the_seconds(qtbot, window):
    panel = window.caption_panel
    text = "Loading builtin:caption (its first use), then captioning…"
    panel._on_started(text)  # what a caption ticket's started signal delivers  # noqa: SLF001
    qtbot.waitUntil(lambda: panel.status.text().startswith(text) and panel.status.text().endswith(" s"),
                    timeout=5000)


def test_help_points_to_the_readme_that_comes_with_the_app(window):
    from mmstudio.resources import readme_path

    assert readme_path() is not None and "## Set up" in readme_path().read_text(encoding="utf-8")
    assert any(a.text() == "Documentation (README)" for a in window.actions())


def test_a_notice_stays_until_the_next_action(qtbot, window):
    window.show_info("Exported 3 captions to /tmp/x.json")
    qtbot.wait(800)
    assert window.message_bar.isVisible()  # not gone while the user looked elsewhere
    qtbot.mouseClick(window.gallery.viewport(), Qt.MouseButton.LeftButton)
    assert not window.message_bar.isVisible()
    window.show_error("Cannot open this image: x.png")
    qtbot.wait(800)
    qtbot.mouseClick(window.gallery.viewport(), Qt.MouseButton.LeftButton)
    assert window.message_bar.isVisible()  # an error stays until dismissed or fixed


def test_correct_and_teach_can_start_a_new_dataset(qtbot, window):
    from pathlib import Path

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QFileDialog

    def choose_new() -> None:
        box = QApplication.activeModalWidget()
        QTimer.singleShot(300, accept_name)
        next(b for b in box.buttons() if b.text().startswith("Start a new dataset")).click()

    def accept_name() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, QFileDialog)
        dialog.accept()  # the proposed name of a folder that does not exist yet

    QTimer.singleShot(300, choose_new)
    chosen = window._ask_teach_folder()  # noqa: SLF001 - the dialog step of Correct & teach
    assert chosen is not None and Path(chosen).name.startswith("corrections-") and not Path(chosen).exists()


def test_nothing_is_silent_without_an_image_and_the_window_fits_1000x700(qtbot, window):
    window.caption_panel.caption_button.click()
    assert "Open or select an image first" in window.message_bar.label.text()
    window.message_bar.hide()
    window.caption_panel.correct_dialog()
    assert "Select an image first" in window.message_bar.label.text()
    assert window.minimumSizeHint().width() <= 1000 and window.minimumSizeHint().height() <= 700


def test_the_newest_turn_stays_in_view_when_the_window_is_resized(qtbot, window, scene_file):
    drop_files(window.gallery, [scene_file])
    qtbot.waitUntil(lambda: bool(window.gallery.refs()), timeout=TIMEOUT)
    panel = window.ask_panel
    window.tabs.setCurrentWidget(panel)
    window.resize(1600, 1000)
    window.show()
    key = window.gallery.current_ref().key
    for _ in range(16):  # more than 1000x700 shows
        panel.input.setPlainText("how many objects are there?")
        panel.send()
        qtbot.waitUntil(lambda: all(t.result or t.error for t in panel.history[key]), timeout=TIMEOUT)
    bar = panel.chat.verticalScrollBar()
    window.resize(1000, 700)  # narrower: the text wraps longer and the bottom moves down
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=5000)
    bar.setValue(0)  # the person scrolls up to read the first turn: resizing leaves them there
    window.resize(1200, 800)
    qtbot.wait(50)
    assert bar.value() == 0

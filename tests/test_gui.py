"""The real window and the real worker, offscreen, driven like a person would."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("PySide6")
pytestqt = pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from mmstudio.cli import main as cli_main  # noqa: E402
from mmstudio.gui.main_window import MainWindow  # noqa: E402
from mmstudio.gui.qt_settings import Settings  # noqa: E402
from mmstudio.models.base import Task  # noqa: E402
from mmstudio.models.loading import builtin_name  # noqa: E402

TIMEOUT = 60000


@pytest.fixture()
def settings(tmp_path):
    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture()
def window(qtbot, settings):
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.client.stop()


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
    qtbot.waitUntil(lambda: key in window.caption_panel.results or key in window.caption_panel.errors,
                    timeout=TIMEOUT)


def test_first_screen_invites_a_drop(window):
    assert window.stack.currentWidget() is window.welcome
    assert "Drop images here" in window.welcome.text()


def test_drop_an_image_and_see_its_caption(qtbot, window, scene_file, capsys):
    drop_files(window.gallery, [scene_file])
    key = str(scene_file.resolve())
    wait_caption(qtbot, window, key)
    result = window.caption_panel.results[key]
    cli_main(["caption", "--json", str(scene_file)])
    import json

    expected = json.loads(capsys.readouterr().out.splitlines()[0])["caption"]
    assert result.caption == expected
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


def test_ask_gives_the_cli_answer(qtbot, window, scene_file, capsys):
    drop_files(window.gallery, [scene_file])
    qtbot.waitUntil(lambda: window.gallery.current_ref() is not None, timeout=TIMEOUT)
    window.tabs.setCurrentWidget(window.ask_panel)
    window.ask_panel.input.setPlainText("how many objects are there?")
    qtbot.keyClick(window.ask_panel.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    key = window.gallery.current_ref().key
    qtbot.waitUntil(lambda: window.ask_panel.history.get(key) and window.ask_panel.history[key][-1].result,
                    timeout=TIMEOUT)
    answer = window.ask_panel.history[key][-1].result.answer
    cli_main(["ask", "--json", str(scene_file), "how many objects are there?"])
    import json

    assert answer == json.loads(capsys.readouterr().out.splitlines()[0])["answer"]


def test_cancel_a_batch(qtbot, window, tmp_path, scene_images):
    paths = []
    for i in range(40):
        path = tmp_path / f"img{i:02d}.png"
        scene_images[i % len(scene_images)].rotate(i).save(path)
        paths.append(path)
    window.gallery.add_paths(paths)
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == 40, timeout=TIMEOUT)
    window.caption_panel.results.clear()
    with qtbot.waitSignal(window.client.cancelled, timeout=TIMEOUT):
        window.caption_panel.caption_all(window.gallery.refs())
        window.caption_panel.batch_size_hint = 1
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.caption_panel.cancel_button.isEnabled() is False
    assert "Cancelled" in window.caption_panel.status.text()


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
    drop_files(window.gallery, [scene_file])
    wait_caption(qtbot, window, str(scene_file.resolve()))


def test_failed_model_load_keeps_the_previous_model(qtbot, window, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    with qtbot.waitSignal(window.client.failed, timeout=TIMEOUT):
        window.load_model(Task.CAPTION, str(broken))
    assert window.models[Task.CAPTION] == builtin_name(Task.CAPTION)
    assert "Still using" in window.message_bar.label.text()


def test_corrupt_settings_mean_defaults(qtbot, tmp_path):
    path = tmp_path / "bad.ini"
    path.write_bytes(b"\x00\xff[overlay]\nopacity=lots\ncolormap=\xff\xfe\n[window]\ngeometry=garbage\n")
    settings = Settings(QSettings(str(path), QSettings.Format.IniFormat))
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    assert 0 <= win.controls.opacity.value() <= 100
    win.client.stop()

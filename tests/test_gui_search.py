"""The Search panel in the real window, with the real worker, offscreen."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from mmstudio.gui.main_window import MainWindow  # noqa: E402
from mmstudio.gui.qt_settings import Settings  # noqa: E402
from mmstudio.models.base import Task  # noqa: E402

TIMEOUT = 60000


def open_window(qtbot, tmp_path, monkeypatch, tiny_models, itm) -> MainWindow:
    from mmstudio.jobs import JobStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    qsettings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    for task, path in tiny_models.items():
        qsettings.setValue(f"model/{task.value}", str(path))
    qsettings.setValue(f"model/{Task.ITM.value}", str(itm))
    win = MainWindow(settings=Settings(qsettings), job_store=JobStore(tmp_path / "jobs.json"))
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture()
def window(qtbot, tmp_path, monkeypatch, tiny_models, family_models):
    win = open_window(qtbot, tmp_path, monkeypatch, tiny_models, family_models["clip"])  # search with CLIP
    yield win
    win.client.stop()


def test_search_panel_ranks_the_gallery_and_shows_a_result(qtbot, window, photos):
    panel = window.search_panel
    window.tabs.setCurrentWidget(panel)
    assert window.tabs.tabText(window.tabs.indexOf(panel)) == "Search"
    window.add_paths([str(photos)])
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == 5, timeout=TIMEOUT)

    qtbot.keyClicks(panel.query, "a red circle")
    panel.top_k.setValue(3)
    qtbot.keyClick(panel.query, Qt.Key.Key_Return)  # the worker indexes and searches; the window stays live
    assert panel.pending and panel.status.text() == "Searching 5 images…"
    qtbot.waitUntil(lambda: not panel.pending and panel.results.count() == 3, timeout=TIMEOUT)
    assert [hit.rank for hit in panel.hits] == [1, 2, 3]
    assert panel.hits[0].score >= panel.hits[1].score >= panel.hits[2].score
    assert panel.hits[0].match is None  # CLIP has no matching head: ranked by embeddings alone
    assert "5 images" in panel.status.text() and "5 newly indexed" in panel.status.text()

    chosen = panel.hits[1].image.key
    panel.results.setCurrentRow(1)
    assert window.gallery.current_ref().key == chosen
    # Thumbnails with the folder in the name, the full path in the status line.
    assert not panel.results.item(1).icon().isNull()
    assert f"{photos.name}/" in panel.results.item(1).text() and panel.status.text() == str(panel.hits[1].image.path)

    # A second search over the same gallery encodes nothing new.
    panel.search()
    qtbot.waitUntil(lambda: not panel.pending, timeout=TIMEOUT)
    assert "newly indexed" not in panel.status.text()
    assert panel.results.count() == 3


def test_a_blip_search_shows_the_matching_heads_verdict(qtbot, tmp_path, monkeypatch, photos, tiny_models):
    window = open_window(qtbot, tmp_path, monkeypatch, tiny_models, tiny_models[Task.ITM])
    panel = window.search_panel
    window.add_paths([str(photos)])
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == 5, timeout=TIMEOUT)
    panel.query.setText("a red circle")
    panel.search()
    qtbot.waitUntil(lambda: not panel.pending and panel.results.count() == 5, timeout=TIMEOUT)
    assert panel.hits[0].match >= panel.hits[1].match >= panel.hits[4].match  # re-ranked by the ITM head
    assert panel.results.item(0).text().startswith(f"1. {panel.hits[0].match:.0%} match")
    assert "matching head" in panel.results.item(0).toolTip()
    window.client.stop()


def test_search_needs_images_and_a_query(qtbot, window):
    panel = window.search_panel
    messages = []
    panel.message.connect(messages.append)
    panel.search()
    panel.query.setText("a red circle")
    panel.search()
    assert messages == ["Type what you are looking for first.",
                        "Open some images first: search runs over the gallery."]
    assert not panel.pending


def test_like_this_one_and_a_dropped_picture_rank_the_gallery_by_looks(qtbot, window, photos, tmp_path):
    from PySide6.QtCore import QMimeData, QPoint, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    panel = window.search_panel
    window.tabs.setCurrentWidget(panel)
    window.add_paths([str(photos)])
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == 5, timeout=TIMEOUT)
    shown = window.gallery.refs()[2]
    window.gallery.select_key(shown.key)
    panel.like_button.click()
    qtbot.waitUntil(lambda: not panel.pending and bool(panel.hits), timeout=TIMEOUT)
    assert panel.hits[0].image.key == shown.key and panel.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert f"most like {shown.path.name}" in panel.status.text()
    dropped = tmp_path / "outside.png"
    from PIL import Image

    Image.open(shown.path).rotate(180).save(dropped)  # not in the gallery: a query picture only
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    event = QDropEvent(QPointF(QPoint(5, 5)), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(event)
    qtbot.waitUntil(lambda: not panel.pending and "outside.png" in panel.status.text(), timeout=TIMEOUT)
    assert len(window.gallery.refs()) == 5 and len(panel.hits) == 5


def write_scenes(folder, count: int, seed: int):
    """`count` Shapes World scenes as PNG files in a new folder."""
    from mmstudio.world import render_scene, sample_scene

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        render_scene(sample_scene(rng)).save(folder / f"s{i:02d}.png")
    return folder


def test_results_come_a_page_at_a_time_as_the_grid_is_scrolled(qtbot, window, tmp_path, monkeypatch):
    from mmstudio.gui.panels import search_panel

    monkeypatch.setattr(search_panel, "PAGE", 6)
    folder = write_scenes(tmp_path / "many", 40, seed=3)
    panel = window.search_panel
    window.tabs.setCurrentWidget(panel)
    window.resize(900, 600)
    window.add_paths([str(folder)])
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == 40, timeout=TIMEOUT)
    panel.query.setText("a red circle")
    panel.top_k.setValue(40)
    panel.search()
    qtbot.waitUntil(lambda: not panel.pending and len(panel.hits) == 40, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: panel.results.verticalScrollBar().maximum() > 0, timeout=TIMEOUT)
    first = panel.results.count()
    assert 6 <= first < 40  # pages until the grid can scroll, not all forty
    bar = panel.results.verticalScrollBar()
    for _ in range(20):
        bar.setValue(bar.maximum())
        qtbot.wait(20)
    assert panel.results.count() == 40
    assert [panel.results.item(i).text().split(".")[0] for i in range(40)] == [str(i) for i in range(1, 41)]

"""The Duplicates view: groups side by side, the others moved to a folder or the Trash, and back with Undo."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from mmstudio.gui.panels.duplicates_panel import DuplicatesPanel, _members  # noqa: E402
from mmstudio.gui.worker import InferenceClient  # noqa: E402
from mmstudio.models.base import LoadOptions  # noqa: E402
from tests.test_duplicates import copy_set  # noqa: E402

TIMEOUT = 60000


@pytest.fixture()
def panel(qtbot):
    client = InferenceClient(LoadOptions(device="cpu"))
    panel = DuplicatesPanel(client)
    qtbot.addWidget(panel)
    panel.show()
    yield panel
    client.stop()


def groups(panel):
    from PySide6.QtWidgets import QGroupBox

    return panel.groups_box.findChildren(QGroupBox)


def test_groups_show_side_by_side_and_moves_to_a_folder_undo(qtbot, panel, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    copy_set(pictures, originals=2, unrelated=3, seed=11)
    panel.find_in_folder(str(pictures))
    qtbot.waitUntil(lambda: panel.scan is not None, timeout=TIMEOUT)
    boxes = groups(panel)
    assert len(boxes) == 2 and "5 pictures · near copies" in boxes[0].title()
    cards = boxes[0].property("cards")
    assert [kept for _, kept in _members(cards)] == [True, False, False, False, False]
    assert cards.item(0).text().endswith("✓ keep")
    kept = _members(cards)[0][0]
    before = sorted(p.name for p in pictures.iterdir())
    away = tmp_path / "copies"
    away.mkdir()
    (away / "g000-jpeg40.jpg").write_bytes(b"a file already there: never overwritten")
    messages = []
    panel.message.connect(messages.append)
    panel.move_others(boxes[0], str(away))
    assert sorted(p.name for p in pictures.iterdir()) == sorted(set(before) - {p.name for p in away.iterdir()}
                                                                 | {kept.rsplit("/", 1)[-1]})
    assert len(list(away.iterdir())) == 5 and (away / "g000-jpeg40.jpg").read_bytes().startswith(b"a file")
    assert [bool(cards.item(i).flags() & Qt.ItemFlag.ItemIsEnabled) for i in range(5)] == [True] + [False] * 4
    assert cards.item(1).text().endswith("(moved)")
    assert "Moved 4 pictures" in messages[-1] and panel.undo_button.isEnabled()
    panel.undo()
    assert sorted(p.name for p in pictures.iterdir()) == before
    assert all(cards.item(i).flags() & Qt.ItemFlag.ItemIsEnabled for i in range(5))
    assert not panel.undo_button.isEnabled()


def test_the_trash_and_back(qtbot, panel, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    copy_set(pictures, originals=1, unrelated=2, seed=5)
    panel.find(sorted(str(p) for p in pictures.iterdir()), "the test")
    qtbot.waitUntil(lambda: panel.scan is not None, timeout=TIMEOUT)
    box = groups(panel)[0]
    cards = box.property("cards")
    cards.setCurrentRow(2)  # keep another one than the largest
    kept = _members(cards)[2][0]
    assert [k for _, k in _members(cards)] == [False, False, True, False, False]
    panel.move_others(box, None)
    trash = tmp_path / "data" / "Trash"
    assert len(list((trash / "files").iterdir())) == 4 and len(list((trash / "info").iterdir())) == 4
    assert (pictures / kept.rsplit("/", 1)[-1]).exists()
    panel.undo()
    assert not list((trash / "files").iterdir()) and not list((trash / "info").iterdir())
    assert len(list(pictures.iterdir())) == 7


def test_copies_moved_from_the_gallery_leave_it_and_undo_brings_them_back(qtbot, tmp_path, settings):
    from mmstudio.gui.main_window import MainWindow
    from mmstudio.jobs import JobStore

    window = MainWindow(settings=settings, job_store=JobStore(tmp_path / "jobs.json"))
    qtbot.addWidget(window)
    try:
        pictures = tmp_path / "pictures"
        pictures.mkdir()
        copy_set(pictures, originals=1, unrelated=2, seed=9)
        window.add_paths([str(pictures)])
        qtbot.waitUntil(lambda: len(window.gallery.refs(loaded_only=False)) == 7, timeout=TIMEOUT)
        panel = window.duplicates_panel
        panel.find_in_gallery()
        qtbot.waitUntil(lambda: panel.scan is not None, timeout=TIMEOUT)
        box = groups(panel)[0]
        panel.move_others(box, str(tmp_path))
        assert len(window.gallery.refs(loaded_only=False)) == 3  # the kept one and the two unrelated
        panel.undo()
        qtbot.waitUntil(lambda: len(window.gallery.refs(loaded_only=False)) == 7, timeout=TIMEOUT)
    finally:
        window.client.stop()

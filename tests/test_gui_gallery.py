"""The gallery keeps decoded photos within a memory budget and decodes the others again when needed."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from mmstudio.gui import qt_gallery  # noqa: E402
from mmstudio.imaging import load_image  # noqa: E402

TIMEOUT = 30000


def test_decoded_images_stay_within_the_budget_and_come_back_when_selected(qtbot, tmp_path, scene_images,
                                                                           monkeypatch):
    monkeypatch.setattr(qt_gallery, "CACHE_BYTES", 2 * 128 * 128 * 3)  # room for two 128 px scenes
    gallery = qt_gallery.Gallery()
    qtbot.addWidget(gallery)
    paths = []
    for i in range(5):
        path = tmp_path / f"scene{i}.png"
        scene_images[i % len(scene_images)].resize((128, 128)).rotate(10 * i).save(path)
        paths.append(path)
    gallery.add_paths(paths)
    qtbot.waitUntil(lambda: len(gallery.refs()) == 5, timeout=TIMEOUT)
    gallery.wait_idle()
    assert len(gallery.in_memory) <= 2  # all listed, at most two decoded in memory

    current = gallery.current_ref().key
    evicted = next(r for r in gallery.refs() if r.key not in gallery.in_memory and r.key != current)
    expected = np.asarray(load_image(evicted.path))
    with qtbot.waitSignal(gallery.image_selected, timeout=TIMEOUT) as shown:
        gallery.select_key(evicted.key)
    ref, image = shown.args
    assert ref.key == evicted.key and np.array_equal(np.asarray(image), expected)
    assert len(gallery.in_memory) <= 2

    other = next(r for r in gallery.refs() if r.key not in gallery.in_memory)
    assert np.array_equal(np.asarray(gallery.image_of(other)), np.asarray(load_image(other.path)))
    assert len(gallery.in_memory) <= 2


def test_opened_files_are_added_in_order_and_the_first_is_shown(qtbot, tmp_path, scene_images):
    gallery = qt_gallery.Gallery()
    qtbot.addWidget(gallery)
    paths = []
    for i in range(5):
        path = tmp_path / f"{'zyxwv'[i]}.png"  # not in alphabetical order: the order given is kept
        scene_images[i].save(path)
        paths.append(path)
    with qtbot.waitSignal(gallery.added, timeout=TIMEOUT) as added:
        gallery.add_paths(paths)
    assert added.args == [5]
    assert [r.key for r in gallery.refs(loaded_only=False)] == [str(p.resolve()) for p in paths]
    assert gallery.current_ref().key == str(paths[0].resolve())  # not whichever thumbnail decoded first
    gallery.show()
    qtbot.waitUntil(lambda: len(gallery.refs()) == 5, timeout=TIMEOUT)
    cell = gallery.visualItemRect(gallery.item(0))
    assert cell.width() >= qt_gallery.THUMB and cell.height() >= qt_gallery.THUMB  # room for the thumbnail
    from PySide6.QtGui import QIcon

    icon = gallery.item(0).icon()  # the selected one keeps its colours: no highlight tint over the picture
    size = icon.availableSizes()[0]
    assert icon.pixmap(size, QIcon.Mode.Selected).toImage() == icon.pixmap(size, QIcon.Mode.Normal).toImage()
    with qtbot.waitSignal(gallery.added, timeout=TIMEOUT) as again:
        gallery.add_paths(paths[:2])
    assert again.args == [0] and gallery.count() == 5


def test_the_picture_the_app_shows_is_the_only_one_selected(qtbot, tmp_path, scene_images):
    """Opening more pictures shows the first new one, selected alone (it was added to the selection)."""
    gallery = qt_gallery.Gallery()
    qtbot.addWidget(gallery)
    first, folder = tmp_path / "first.png", tmp_path / "more"
    scene_images[0].save(first)
    folder.mkdir()
    for i in (1, 2):
        scene_images[i].save(folder / f"s{i}.png")
    with qtbot.waitSignal(gallery.added, timeout=TIMEOUT):
        gallery.add_paths([first])
    with qtbot.waitSignal(gallery.added, timeout=TIMEOUT):
        gallery.add_paths([folder])
    qtbot.waitUntil(lambda: len(gallery.refs()) == 3, timeout=TIMEOUT)
    assert [item.text() for item in gallery.selectedItems()] == ["s1.png"] == [gallery.currentItem().text()]

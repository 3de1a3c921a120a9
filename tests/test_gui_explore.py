"""The Explore tab: the gallery on a map of the model's space, a text placed among the pictures it fits."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")

from mmstudio.embedding_map import pca_layout, place  # noqa: E402
from tests.test_gui_search import open_window, write_scenes  # noqa: E402

TIMEOUT = 60000


def test_pca_plane_keeps_the_main_directions_and_places_new_vectors():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, 2)) @ np.array([[3.0, 0, 0, 0], [0, 1.0, 0, 0]])
    vectors = base + 0.01 * rng.standard_normal((300, 4))
    layout = pca_layout(vectors)
    assert layout.xy.shape == (300, 2) and layout.explained > 0.99
    assert np.allclose(np.abs(layout.axes[0]), [1, 0, 0, 0], atol=0.01)
    np.testing.assert_allclose(place(vectors[:3], layout.mean, layout.axes), layout.xy[:3], atol=1e-5)
    assert pca_layout(vectors[:1]).xy.shape == (1, 2)


def mapped(qtbot, window, folder, count: int, query: str = ""):
    """The Explore tab showing the map of a folder's `count` pictures (and a text on it)."""
    panel = window.explore_panel
    window.tabs.setCurrentWidget(panel)
    window.add_paths([str(folder)])
    qtbot.waitUntil(lambda: len(window.gallery.refs()) == count, timeout=TIMEOUT)
    panel.draw_map(query)
    qtbot.waitUntil(lambda: panel.outcome is not None, timeout=TIMEOUT)
    return panel


@pytest.fixture()
def window(qtbot, tmp_path, monkeypatch, tiny_models, family_models):
    win = open_window(qtbot, tmp_path, monkeypatch, tiny_models, family_models["clip"])
    yield win
    win.client.stop()


def test_the_map_shows_the_gallery_a_text_lands_on_it_and_a_click_shows_the_picture(qtbot, window, photos):
    panel = mapped(qtbot, window, photos, 5)
    assert len(panel.points.points()) == 5 and len(panel.star.points()) == 0
    assert "5 pictures" in panel.status.text()
    panel.query.setText("a red circle")
    panel.draw_map(panel.query.text())
    qtbot.waitUntil(lambda: panel.outcome.query_xy is not None, timeout=TIMEOUT)
    assert len(panel.star.points()) == 1 and len(panel.best.points()) == 5
    assert panel.outcome.similarity.shape == (5,)
    chosen = []
    panel.image_chosen.connect(chosen.append)
    point = panel.points.points()[3]
    panel._clicked(panel.points, [point])
    assert chosen == [point.data()] and window.gallery.current_ref().key == point.data()
    qtbot.waitUntil(lambda: not window.gallery.icon_of(point.data()).isNull(), timeout=TIMEOUT)
    panel._hovered(panel.points, [point])
    tip = panel.plot.toolTip()
    assert tip.startswith('<img src="data:image/png;base64,') and tip.endswith(point.data())  # thumbnail, path


def test_binning_counts_each_point_in_its_pixel():
    from mmstudio.gui.qt_density_map import binned, rgba

    xy = np.array([[0.05, 0.05], [0.05, 0.06], [0.95, 0.95], [2.0, 0.5]], np.float32)  # the last out of view
    counts = binned(xy, 0, 1, 0, 1, 10, 10)
    assert counts.sum() == 3 and counts[0, 0] == 2 and counts[9, 9] == 1
    image = rgba(counts)
    assert image[0, 0, 3] > image[9, 9, 3] > 0 and image[5, 5, 3] == 0  # more points, stronger; none, clear


def test_a_large_map_is_a_density_image_that_still_picks_pictures(qtbot, window, photos, monkeypatch):
    from PySide6.QtCore import QPointF

    from mmstudio.gui.panels import explore_panel

    monkeypatch.setattr(explore_panel, "DENSE_FROM", 2)
    panel = mapped(qtbot, window, photos, 5)
    assert len(panel.points.points()) == 0 and panel.density.image.isVisible()
    assert panel.density.image.image is not None
    (x0, x1), (y0, y1) = panel.plot.getViewBox().viewRange()  # framed to every point, not to the empty view
    xy = panel.outcome.layout.xy
    assert x0 <= xy[:, 0].min() and xy[:, 0].max() <= x1 and y0 <= xy[:, 1].min() and xy[:, 1].max() <= y1
    view = panel.plot.getViewBox()
    x, y = panel.outcome.layout.xy[3]
    row = panel._density_row(view.mapViewToScene(QPointF(float(x), float(y))))
    assert row == 3 or np.allclose(panel.outcome.layout.xy[row], (x, y))  # two pictures may share a place
    assert panel.density.nearest(float(x) + 1e6, float(y)) is None  # far from every point: nothing picked
    panel.draw_map("a red circle")  # the star and the rings stay on top of the image
    qtbot.waitUntil(lambda: panel.outcome.query_xy is not None, timeout=TIMEOUT)
    assert len(panel.star.points()) == 1 and len(panel.points.points()) == 0


def test_a_rectangle_on_the_map_selects_its_pictures_in_the_gallery(qtbot, window, photos):
    from PySide6.QtCore import QRectF

    panel = mapped(qtbot, window, photos, 5)
    assert hasattr(panel.plot.getViewBox(), "selected")  # Shift+drag reports its rectangle there
    xy = panel.outcome.layout.xy
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    panel.select_area(QRectF(float(x1) + 1, float(y1) + 1, -float(x1 - x0) - 2, -float(y1 - y0) - 2))
    assert len(window.gallery.selectedItems()) == 5  # a rectangle drawn either way round
    x, y = xy[2]
    panel.select_area(QRectF(float(x) - 1e-4, float(y) - 1e-4, 2e-4, 2e-4))
    assert window.gallery.current_ref().key == panel.outcome.images[2].key
    assert 1 <= len(window.gallery.selectedItems()) < 5  # only what the rectangle holds
    x, y = xy[4]
    panel.select_lasso(np.array([[x - 1e-4, y - 1e-4], [x + 1e-4, y - 1e-4], [x, y + 1e-4]]))  # a lasso
    assert window.gallery.current_ref().key == panel.outcome.images[4].key
    assert 1 <= len(window.gallery.selectedItems()) < 5
    assert hasattr(panel.plot.getViewBox(), "lassoed")  # Ctrl+drag reports its corners there


def test_a_lasso_holds_the_points_inside_its_outline_only():
    from mmstudio.gui.qt_density_map import in_polygon

    grid = np.array([[x, y] for y in range(5) for x in range(5)], np.float32)
    u_shape = np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 3.5], [2.5, 3.5], [2.5, 1.5], [1.5, 1.5], [1.5, 3.5],
                        [0.5, 3.5]])
    assert sorted(in_polygon(grid, u_shape).tolist()) == [6, 7, 8, 11, 13, 16, 18]  # not the notch's 12, 17
    assert in_polygon(grid, u_shape[:2]).size == 0


def test_umap_is_computed_in_its_own_process_kept_with_the_index_and_shown_when_ready(qtbot, window, tmp_path):
    pytest.importorskip("umap")
    window.explore_panel.method.setCurrentIndex(window.explore_panel.method.findData("umap"))
    panel = mapped(qtbot, window, write_scenes(tmp_path / "scenes", 24, seed=11), 24, "a red circle")
    assert panel.layout().method == "pca" and panel.umap_process is not None  # PCA at once, UMAP under way
    assert "background" in panel.status.text()
    qtbot.waitUntil(lambda: panel.outcome.umap is not None, timeout=180000)
    assert panel.layout().method == "umap" and "UMAP" in panel.status.text()
    assert len(panel.points.points()) == 24 and len(panel.star.points()) == 1
    assert panel.outcome.umap_path.is_file()  # kept beside the index: the next map opens with it
    panel.draw_map("a red circle")
    qtbot.waitUntil(lambda: panel.outcome.umap is not None and panel.umap_process is None, timeout=TIMEOUT)
    panel.method.setCurrentIndex(panel.method.findData("pca"))
    assert panel.layout().method == "pca"


def test_points_are_coloured_by_cluster_caption_word_and_duplicate_group(qtbot, window, photos):
    import shutil

    shutil.copy(photos / "scene0.png", photos / "scene0 copy.png")  # one group of two copies
    panel = mapped(qtbot, window, photos, 6)
    assert panel.outcome.clusters.shape == (6,)

    def colours():
        return {point.brush().color().getRgb() for point in panel.points.points()}

    panel.colour.setCurrentIndex(panel.colour.findData("cluster"))
    assert "groups of alike pictures" in panel.status.text() and len(colours()) >= 2

    panel.colour.setCurrentIndex(panel.colour.findData("word"))
    assert panel.colour_word.isVisible() and "type a word" in panel.status.text().lower()
    panel.colour_word.setText("red")
    assert "not captioned yet (Caption ▸ Caption all)" in panel.status.text()
    window.caption_panel.caption_all(window.gallery.refs())
    qtbot.waitUntil(lambda: len(window.caption_panel.results) == 6, timeout=TIMEOUT)
    panel.show_layout()
    with_red = sum("red" in r.caption.split() for r in window.caption_panel.results.values())
    assert f"{with_red} captions with “red”" in panel.status.text() and "not captioned" not in panel.status.text()

    panel.colour.setCurrentIndex(panel.colour.findData("duplicates"))
    assert "No duplicate groups yet" in panel.status.text()
    window.duplicates_panel.find_in_gallery()
    qtbot.waitUntil(lambda: window.duplicates_panel.scan is not None, timeout=TIMEOUT)
    panel.show_layout()
    assert "1 group of copies" in panel.status.text() and len(colours()) == 2  # the pair, and the rest faded


def test_a_dataset_folder_colours_each_picture_by_whether_its_caption_is_right(qtbot, tmp_path, monkeypatch,
                                                                              tiny_models, family_models):
    from mmstudio.models.base import Task
    from mmstudio.world import generate_dataset
    from mmstudio.world.dataset import read_metadata, true_captions

    data = generate_dataset(tmp_path / "data", 6, seed=5)
    truth = {str((data / row["file_name"]).resolve()): row["caption"] for row in read_metadata(data)}
    assert true_captions([data / "images" / "000001.png", tmp_path / "elsewhere.png", None]) == [
        truth[str((data / "images" / "000001.png").resolve())], None, None]
    # The built-in captioner: right on most of its own world's scenes, so both colours show.
    window = open_window(qtbot, tmp_path, monkeypatch, {**tiny_models, Task.CAPTION: "builtin:caption"},
                         family_models["clip"])
    panel = mapped(qtbot, window, data / "images", 6)
    window.caption_panel.caption_all(window.gallery.refs())
    qtbot.waitUntil(lambda: len(window.caption_panel.results) == 6, timeout=TIMEOUT)
    panel.colour.setCurrentIndex(panel.colour.findData("correct"))
    right = sum(window.caption_panel.results[ref.key].caption == truth[str(ref.path.resolve())]
                for ref in window.gallery.refs())
    assert right >= 3
    assert f"Green: {right} captions right, red: {6 - right} wrong, of 6 with a true caption" in panel.status.text()
    window.client.stop()

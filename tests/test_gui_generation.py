"""The Generation section of the Caption and Ask panels: what it sets reaches the model, and is kept per model."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytestqt = pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from mmstudio.gui.qt_generation import GenerationBox  # noqa: E402
from mmstudio.gui.qt_settings import Settings  # noqa: E402
from mmstudio.models.base import Task  # noqa: E402
from mmstudio.models.generation import GenerationOptions  # noqa: E402
from tests.test_gui import TIMEOUT, cli, drop_files  # noqa: E402


def caption_scene(qtbot, window, tmp_path, image):
    """Drop a scene on the window and wait for its caption: (its path, its gallery key)."""
    path = tmp_path / "scene.png"
    image.save(path)
    drop_files(window.gallery, [path])
    key = str(path.resolve())
    qtbot.waitUntil(lambda: key in window.caption_panel.results, timeout=TIMEOUT)
    return path, key


def test_caption_settings_reach_the_model_and_recaption_the_image(qtbot, window, tmp_path, scene_images, capsys,
                                                                  models):
    path, key = caption_scene(qtbot, window, tmp_path, scene_images[0])
    panel = window.caption_panel
    first = panel.results[key]
    box = panel.generation
    assert box.summary.text() == "the model's own settings" and box.options() == GenerationOptions()
    box.toggle.setChecked(True)
    assert box.body.isVisible()
    box.prompt.setText("a large")
    box.beams.setValue(2)
    box.max_new.setValue(6)
    assert box.options() == GenerationOptions(prompt="a large", num_beams=2, max_new_tokens=6)
    assert "a large" in box.summary.text() and "2 beams" in box.summary.text()
    qtbot.waitUntil(lambda: key in panel.results and panel.results[key] is not first, timeout=TIMEOUT)
    expected = cli(capsys, "caption", "--json", "--model", models[Task.CAPTION], "--prompt", "a large",
                   "--num-beams", "2", "--max-new-tokens", "6", str(path))
    assert panel.results[key].caption == expected["caption"]
    assert panel.results[key].caption.startswith("a large")


def test_ask_settings_reach_the_model(qtbot, window, tmp_path, scene_images, capsys, models):
    path = tmp_path / "scene.png"
    scene_images[1].save(path)
    drop_files(window.gallery, [path])
    qtbot.waitUntil(lambda: bool(window.gallery.refs()), timeout=TIMEOUT)
    panel = window.ask_panel
    assert panel.generation.prompt is None  # a prompt is for captions
    panel.generation.beams.setValue(3)
    panel.generation.decoding.setCurrentIndex(panel.generation.decoding.findData(False))
    assert not panel.generation.temperature.isEnabled()  # sampling settings wait for sampling
    window.tabs.setCurrentWidget(panel)
    key = window.gallery.current_ref().key
    panel.ask("how many objects are there?")
    qtbot.waitUntil(lambda: panel.history[key][-1].result is not None, timeout=TIMEOUT)
    expected = cli(capsys, "ask", "--json", "--model", models[Task.VQA], "--num-beams", "3", "--no-sample",
                   str(path), "how many objects are there?")
    assert panel.history[key][-1].result.answer == expected["answer"]


def test_settings_are_remembered_per_model(qtbot, tmp_path):
    store = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    box = GenerationBox("caption", prompt=True)
    qtbot.addWidget(box)
    box.attach(store, "/models/blip-large")
    box.decoding.setCurrentIndex(box.decoding.findData(True))
    box.temperature.setValue(0.7)
    box.seed.setValue(11)
    chosen = GenerationOptions(do_sample=True, temperature=0.7, seed=11)
    assert box.options() == chosen
    box.set_model("builtin:caption")
    assert box.options() == GenerationOptions()  # another model starts from its own settings
    box.set_model("/models/blip-large")
    assert box.options() == chosen
    again = GenerationBox("caption", prompt=True)  # the next start of the app
    qtbot.addWidget(again)
    again.attach(Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)),
                 "/models/blip-large")
    assert again.options() == chosen
    again.reset.click()
    assert again.options() == GenerationOptions()
    store.set("generation/caption/builtin%3Acaption", '{"num_beams": "many"}')  # corrupt: the model's own
    box.set_model("builtin:caption")
    assert box.options() == GenerationOptions()


def test_a_new_caption_of_the_selected_image_moves_the_overlay_to_it(qtbot, window, tmp_path, scene_images):
    path, key = caption_scene(qtbot, window, tmp_path, scene_images[2])
    panel = window.caption_panel
    panel.select_token(len(panel.results[key].tokens) - 1)
    first = panel.results[key]
    panel.generation.prompt.setText("a large")
    qtbot.waitUntil(lambda: panel.results.get(key) not in (None, first), timeout=TIMEOUT)
    stack, index, label = window._overlay  # noqa: SLF001 - what the image shows now
    assert stack is panel.results[key].attention, "the map is the new caption's, not the old one's"
    assert label == f"word “{panel.results[key].tokens[index]}”"


def test_a_model_that_picks_answers_has_no_settings_to_offer(qtbot, window, family_models):
    window.load_model(Task.VQA, str(family_models["vilt"]))
    box = window.ask_panel.generation
    qtbot.waitUntil(lambda: window.models[Task.VQA] == str(family_models["vilt"]), timeout=TIMEOUT)
    assert not box.toggle.isEnabled() and "picks its answer from a list" in box.summary.text()
    window.load_model(Task.VQA, "builtin:vqa")
    qtbot.waitUntil(lambda: window.models[Task.VQA] == "builtin:vqa", timeout=TIMEOUT)
    assert box.toggle.isEnabled() and box.summary.text() == "the model's own settings"


def test_showing_a_models_settings_is_not_a_change(qtbot):
    box = GenerationBox("caption", prompt=True)
    qtbot.addWidget(box)
    seen = []
    box.changed.connect(lambda: seen.append(1))
    box.set_options(GenerationOptions(num_beams=2))
    box.set_model("builtin:caption")
    assert seen == [] and box.options() == GenerationOptions()  # nothing remembered for it: the model's own
    box.beams.setValue(3)
    assert seen == [1]
    box.reset.click()  # the user's own change back
    assert seen == [1, 1] and box.options() == GenerationOptions()

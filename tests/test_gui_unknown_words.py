"""Words the model did not understand, marked in the Ask chat, the Match table and the Search line (real window,
real worker, the built-in models, offscreen)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor, QTextDocument  # noqa: E402

from mmstudio.gui.main_window import MainWindow  # noqa: E402
from mmstudio.gui.qt_settings import Settings  # noqa: E402
from mmstudio.gui.qt_unknown_words import COLOR, MARKED_ROLE, TIP, marked_html, wave_underlines  # noqa: E402

TIMEOUT = 60000
SUNSET = "is this a photo of a sunset?"


@pytest.fixture()
def window(qtbot, tmp_path, monkeypatch, scene_images):
    """The window on the built-in models (the settings name none), with one scene open."""
    from mmstudio.jobs import JobStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    win = MainWindow(settings=settings, job_store=JobStore(tmp_path / "jobs.json"))
    qtbot.addWidget(win)
    win.show()
    path = tmp_path / "scene.png"
    scene_images[0].save(path)
    win.add_paths([str(path)])
    # The title changes once the panels have the decoded image.
    qtbot.waitUntil(lambda: win.windowTitle().endswith("scene.png"), timeout=TIMEOUT)
    yield win
    win.client.stop()


def char_format_of(document: QTextDocument, word: str) -> QTextCharFormat:
    start = document.toPlainText().index(word)
    cursor = QTextCursor(document)
    cursor.setPosition(start + 1)  # the format of the character before the cursor: inside the word
    return cursor.charFormat()


def test_marks_are_whole_words_as_typed_and_the_rest_is_escaped():
    marked = marked_html("an offer of <b>cake</b> & tea", ["of", "cake"])
    assert marked.count("<span") == 2 and "offer" in marked and "&lt;b&gt;" in marked and "&amp; tea" in marked
    assert marked_html("a <circle>", []) == "a &lt;circle&gt;"
    document = QTextDocument()
    document.setHtml(marked)
    assert wave_underlines(document) == 2
    mark = char_format_of(document, "cake")
    assert mark.underlineStyle() == QTextCharFormat.UnderlineStyle.WaveUnderline and mark.toolTip() == TIP
    assert char_format_of(document, "offer").underlineStyle() == QTextCharFormat.UnderlineStyle.NoUnderline


def test_the_chat_marks_the_unknown_words_and_answers_with_them_instead_of_a_guess(qtbot, window):
    panel = window.ask_panel
    window.tabs.setCurrentWidget(panel)
    panel.ask(SUNSET)
    qtbot.waitUntil(lambda: not panel.pending, timeout=TIMEOUT)
    text = panel.chat.toPlainText()
    assert "did not understand “this”, “photo”, “of”, “sunset”" in text and "It knows shapes: circle" in text
    assert "where it looked" not in text  # there is no answer to show evidence for
    document = panel.chat.document()
    for word in ("photo", "sunset"):
        mark = char_format_of(document, word)
        assert mark.underlineStyle() == QTextCharFormat.UnderlineStyle.WaveUnderline, word
        assert mark.toolTip() == TIP and mark.foreground().color() == QColor(COLOR)
    assert char_format_of(document, "is this").toolTip() == ""  # a word it knows stays as typed

    panel.ask("how many objects are there?")  # a question in its words is still answered
    qtbot.waitUntil(lambda: not panel.pending, timeout=TIMEOUT)
    turn = panel.history[window.gallery.current_ref().key][-1]
    assert turn.result.understood and turn.result.answer in {"one", "two", "three", "four"}
    assert panel.chat.toPlainText().count("where it looked") == 1
    panel.ask(SUNSET)  # asked last, it has no evidence: the image keeps showing the latest answer's
    qtbot.waitUntil(lambda: not panel.pending, timeout=TIMEOUT)
    with qtbot.waitSignal(panel.overlay_requested, timeout=5000) as shown:
        panel.show_evidence()
    assert shown.args[2] == f"answer “{turn.result.answer}”"


def test_the_match_table_marks_the_unknown_words_of_a_text(qtbot, window):
    panel = window.match_panel
    window.tabs.setCurrentWidget(panel)
    key = window.gallery.current_ref().key
    panel.set_texts(["a photo of a red circle", "a small red circle"])
    qtbot.waitUntil(lambda: key in panel.results and not panel.pending, timeout=TIMEOUT)
    rows = {panel.table.item(r, 0).text(): panel.table.item(r, 0) for r in range(panel.table.rowCount())}
    marked, plain = rows["a photo of a red circle"], rows["a small red circle"]
    assert marked.data(MARKED_ROLE).count("<span") == 2 and marked.toolTip().startswith("not understood: photo, of")
    assert plain.data(MARKED_ROLE) is None
    assert "not in the model's vocabulary" in panel.status.text() and "It knows shapes:" in panel.status.text()
    # The delegate paints the marks: red pixels in the marked row, none in the other.
    picture = panel.table.viewport().grab().toImage()

    def red_pixels(item) -> int:
        rect = panel.table.visualItemRect(item)
        return sum(QColor(picture.pixel(x, y)).red() > 150 and QColor(picture.pixel(x, y)).green() < 90
                   for x in range(rect.left(), rect.right(), 2) for y in range(rect.top(), rect.bottom()))

    assert red_pixels(marked) > 10 and red_pixels(plain) == 0


def test_the_search_line_marks_the_words_the_query_was_ranked_without(qtbot, window):
    panel = window.search_panel
    window.tabs.setCurrentWidget(panel)
    panel.query.setText("a sunset circle")
    panel.search()
    qtbot.waitUntil(lambda: not panel.pending and panel.results.count() == 1, timeout=TIMEOUT)
    status = panel.status.text()
    assert "<span" in status and ">sunset</span>" in status and "Not understood: sunset" in status
    assert panel.query.toolTip() == "not understood: sunset"


def test_the_chat_answers_a_question_of_an_unlearned_form_with_a_caution(qtbot, window):
    panel = window.ask_panel
    window.tabs.setCurrentWidget(panel)
    panel.ask("is there a star?")
    qtbot.waitUntil(lambda: not panel.pending, timeout=TIMEOUT)
    text = panel.chat.toPlainText()
    assert "where it looked" in text  # answered: the caution does not replace the answer
    assert "Not a question of a form the model was trained on: the answer may be a guess; it knows questions like" \
        in text
    panel.ask("is there a red circle?")
    qtbot.waitUntil(lambda: not panel.pending, timeout=TIMEOUT)
    assert panel.chat.toPlainText().count("Not a question of a form") == 1

"""Helpers of mmstudio/attention.py that the GUI's views share."""

from __future__ import annotations

from mmstudio.attention import first_content_token


def test_a_caption_opens_on_its_first_word_that_names_something():
    assert first_content_token(("a", "small", "red", "circle")) == 1
    assert first_content_token(("the", "circle", "and", "a", "star")) == 1
    assert first_content_token(("circle",)) == 0


def test_a_caption_of_stop_words_only_or_no_words_opens_on_the_first():
    assert first_content_token(("a", "and", "the")) == 0
    assert first_content_token(()) == 0

"""Helpers of mmstudio/attention.py that the GUI's views share."""

from __future__ import annotations

import numpy as np

from mmstudio.attention import first_content_token


def test_a_caption_opens_on_its_first_word_that_names_something():
    assert first_content_token(("a", "small", "red", "circle")) == 1
    assert first_content_token(("the", "circle", "and", "a", "star")) == 1
    assert first_content_token(("circle",)) == 0


def test_a_caption_of_stop_words_only_or_no_words_opens_on_the_first():
    assert first_content_token(("a", "and", "the")) == 0
    assert first_content_token(()) == 0


def test_an_empty_caption_has_an_empty_stack_of_maps():
    # A caption of no tokens (a model that stops at once) used to fail in normalize_maps.
    from mmstudio.attention import AttentionStack

    stack = AttentionStack((), np.zeros((0, 2, 2, 4, 4), np.float32), (0, 1), 1)
    assert stack.maps().shape == (0, 4, 4) and stack.maps(layer="mean", head="max").shape == (0, 4, 4)
    maps = np.random.default_rng(0).random((3, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(AttentionStack(("a", "b", "c"), maps[:, :, None].repeat(2, 2), (0, 1), 0)
                               .maps().sum(axis=(1, 2)), 1.0, rtol=1e-5)

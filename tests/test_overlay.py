"""Overlays drawn over images (mmstudio/overlay.py): the spotlight keeps the evidence's colours true."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmstudio.overlay import SPOTLIGHT, STYLES, blend, overlay_layer


def test_the_spotlight_leaves_the_attended_patch_as_it_is_and_dims_the_rest():
    pink = Image.new("RGB", (64, 64), (255, 105, 180))
    amap = np.zeros((4, 4), np.float32)
    amap[1, 1] = 1.0  # the model looked at one patch: pixels 16-31 in both directions
    shown = np.asarray(blend(pink, amap, opacity=0.6, colormap=SPOTLIGHT)).astype(int)
    assert (shown[22:26, 22:26] == (255, 105, 180)).all()  # its colour stays pink, not purple
    assert (shown[56:, 56:].sum(axis=-1) < 0.6 * (255 + 105 + 180)).all()  # far away: dimmed


@pytest.mark.parametrize("style", STYLES)
def test_every_style_gives_one_layer_for_the_window_and_for_saved_pngs(style):
    amap = np.random.default_rng(0).random((3, 3)).astype(np.float32)
    colors, alpha = overlay_layer(amap, (30, 20), style)
    assert colors.shape == (20, 30, 3) and colors.dtype == np.uint8
    assert alpha.shape == (20, 30) and 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert blend(Image.new("RGB", (30, 20), "white"), amap, colormap=style).size == (30, 20)

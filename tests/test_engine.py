"""Engine.caption_each: the one batched-captioning loop of the GUI worker, the CLI and Engine.caption."""

from __future__ import annotations

import pytest

from mmstudio.engine import Engine
from mmstudio.errors import CancelledError
from mmstudio.imaging import load_image
from mmstudio.models.base import GenerationOptions, LoadOptions, Task
from mmstudio.requests import CancelToken, CaptionRequest, ImageRef, execute

GEN = GenerationOptions(max_new_tokens=6)


@pytest.fixture()
def inputs(photos, tmp_path):
    """Five good image files with three bad ones between them; with batches of 2, batch 3 holds no good image."""
    good = sorted(photos.glob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    return [good[0], broken, good[1], good[2], empty, missing, good[3], good[4]]


@pytest.fixture()
def engine(tiny_models):
    engine = Engine(LoadOptions(device="cpu", dtype="fp32"))
    engine.use(Task.CAPTION, str(tiny_models[Task.CAPTION]))
    return engine


def test_items_keep_input_order_with_failures_in_place(engine, inputs):
    items = list(engine.caption_each(inputs, load=load_image, batch_size=2, generation=GEN))
    assert [item.image for item in items] == inputs
    failed = [i for i, item in enumerate(items) if item.error is not None]
    assert failed == [1, 4, 5]
    assert all(items[i].result is None for i in failed)
    good = [path for i, path in enumerate(inputs) if i not in failed]
    expected = engine.caption([load_image(path) for path in good], batch_size=16, generation=GEN)
    assert [item.result.caption for item in items if item.error is None] == [r.caption for r in expected]


def test_progress_counts_each_batch_of_inputs_failed_ones_included(engine, inputs):
    seen = []
    list(engine.caption_each(inputs, load=load_image, batch_size=3, generation=GEN,
                             progress=lambda done, total: seen.append((done, total))))
    assert seen == [(3, 8), (6, 8), (8, 8)]


def test_cancel_between_batches_keeps_the_finished_ones(engine, inputs):
    token = CancelToken()
    loaded = []

    def load(path):
        loaded.append(path)
        return load_image(path)

    items = []
    with pytest.raises(CancelledError):
        for item in engine.caption_each(inputs, load=load, batch_size=3, generation=GEN, cancel=token.check,
                                        progress=lambda done, total: token.cancel()):
            items.append(item)
    assert [item.image for item in items] == inputs[:3]
    assert loaded == inputs[:3]  # the next batch was never read


def test_each_batch_is_given_out_before_the_next_is_read(engine, inputs):
    loaded = []

    def load(path):
        loaded.append(path)
        return load_image(path)

    items = engine.caption_each(inputs, load=load, batch_size=2, generation=GEN)
    first = next(items)
    assert first.image == inputs[0] and first.result is not None
    assert loaded == inputs[:2]  # the CLI prints a batch's lines before it reads the next files


def test_a_caption_request_is_the_same_loop(engine, inputs):
    refs = tuple(ImageRef(key=str(path), path=path) for path in inputs)
    steps = []
    outcome = execute(engine, CaptionRequest(images=refs, attention=False, batch_size=2),
                      progress=lambda done, total: steps.append(done))
    assert [item.image for item in outcome.items] == list(refs)
    assert [item.error is not None for item in outcome.items] == [False, True, False, False, True, True, False, False]
    assert steps == [2, 4, 6, 8]

"""The inference worker under a storm of random requests, and broken model folders loaded through it.

The real InferenceClient and its thread, real tiny models (plus the built-in ones where the
checkout has them), Qt offscreen. The storm (tests/request_storm.py) is seeded: a failure
names its seed and reproduces. bench/worker_stress.py runs the same storm with a table.
"""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from mmstudio.errors import ModelLoadError, ModelNotFoundError  # noqa: E402
from mmstudio.models.base import Task  # noqa: E402
from mmstudio.requests import CaptionRequest, ImageRef, LoadModelRequest  # noqa: E402
from tests.request_storm import Storm  # noqa: E402
from tests.storm_world import build_world, make_broken_models  # noqa: E402

RSS_GROWTH_BOUND = 200 * 2**20  # generous: a leak of even 200 kB per request would cross it


@pytest.fixture(autouse=True)
def one_thread():
    """Torch on one intra-op thread in these tests (the worker thread follows the setting).

    These tiny models gain nothing from more threads, and on a machine whose cores are busy,
    threads waiting on each other make each request 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def client(qtbot, tmp_path, monkeypatch):
    from mmstudio.gui.worker import InferenceClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # search indexes land here
    client = InferenceClient()
    yield client
    client.stop()


def summary(report) -> str:
    return (f"{report.requests} requests: {dict(report.outcomes)}; kinds {dict(report.kinds)}; "
            f"cancels {dict(report.cancels)}; RSS {report.rss_warm / 2**20:.0f} -> {report.rss_end / 2**20:.0f} MiB")


@pytest.mark.slow
def test_a_storm_of_1000_random_requests(client, tmp_path, tiny_models):
    seed, count = 20261129, 1000
    storm = Storm(client, build_world(tmp_path / "world", tiny_models, builtin=True), seed)
    storm.load_first_models()
    report = storm.run(count, warmup=200)
    print(summary(report))
    assert not report.problems, f"seed {seed}: " + "\n".join(report.problems[:20])
    assert sum(report.outcomes.values()) == count + 4  # the storm, three first loads and a last one
    outcomes = report.outcomes
    assert outcomes["finished"] and outcomes["cancelled before start"] and outcomes["cancelled while running"]
    assert {"ImageLoadError", "ModelLoadError", "ModelNotFoundError", "UnsupportedTaskError"} == {
        end.split(":")[1] for end in outcomes if end.startswith("failed:")}
    assert report.rss_growth < RSS_GROWTH_BOUND, summary(report)


# ---------------------------------------------------------------- broken model folders through the worker


@pytest.fixture(scope="module")
def broken_models(tiny_models, tmp_path_factory):
    return make_broken_models(tiny_models[Task.CAPTION], tmp_path_factory.mktemp("broken-models"))


@pytest.mark.parametrize("kind", ["missing-config", "truncated-weights", "pickle-only", "wrong-architecture"])
def test_a_broken_folder_is_reported_and_the_previous_model_keeps_working(
        qtbot, client, tiny_models, broken_models, photos, kind):
    def run(request):
        ticket = client.submit(request)
        qtbot.waitUntil(lambda: ticket.done, timeout=120_000)
        return ticket.outcome if ticket.error is None else ticket.error

    image = ImageRef(str(photos / "scene0.png"), photos / "scene0.png")
    assert run(LoadModelRequest(Task.CAPTION, str(tiny_models[Task.CAPTION]))).info.tasks == {Task.CAPTION}
    before = run(CaptionRequest((image,))).items[0].result.caption

    folder = broken_models[kind]
    error = run(LoadModelRequest(Task.CAPTION, str(folder)))
    assert isinstance(error, ModelLoadError), error
    assert not hasattr(error, "details")  # a typed error, not a bug caught by the worker
    assert folder.name in str(error)

    after = run(CaptionRequest((image,)))
    assert after.items[0].error is None
    assert after.items[0].result.caption == before


# ---------------------------------------------------------------- found by the storm


def test_over_long_texts_are_cut_to_the_model_not_a_crash(tiny_models, scene_images):
    # BLIP's text encoder has a fixed position table (48 in the tiny and built-in models): a longer
    # question, match text or search query used to fail in torch with an untyped RuntimeError.
    from mmstudio.engine import Engine

    engine = Engine()
    image = scene_images[0]
    long_text = "is there a red circle " * 40
    engine.use(Task.VQA, tiny_models[Task.VQA])
    engine.use(Task.ITM, tiny_models[Task.ITM])
    answer = engine.ask(image, [long_text], attention=True)[0]
    assert answer.question == long_text and isinstance(answer.answer, str)
    matches = engine.match(image, [long_text, "a red circle"], attention=True)
    assert [m.text for m in matches] == [long_text, "a red circle"]
    assert engine.embedder().text_features([long_text]).shape[0] == 1


# ---------------------------------------------------------------- tickets


def test_each_ticket_hears_only_its_own_request(qtbot, client, tiny_models, photos):
    import threading

    image = ImageRef(str(photos / "scene0.png"), photos / "scene0.png")
    good = client.submit(CaptionRequest((image,), model=str(tiny_models[Task.CAPTION])))
    bad = client.submit(LoadModelRequest(Task.CAPTION, str(photos / "no-such-model")))
    heard = {"good": [], "bad": []}
    good.finished.connect(lambda outcome: heard["good"].append(outcome.request))
    good.failed.connect(lambda exc: heard["good"].append(exc))
    bad.finished.connect(lambda outcome: heard["bad"].append(outcome.request))
    bad.failed.connect(lambda exc: heard["bad"].append(exc))
    qtbot.waitUntil(lambda: good.done and bad.done, timeout=120_000)
    assert heard["good"] == [good.request]
    assert len(heard["bad"]) == 1 and isinstance(heard["bad"][0], ModelNotFoundError)
    assert not client.busy

    # Work that needs no model runs off the GUI thread, with the same kind of ticket.
    gui_thread = threading.get_ident()
    call = client.run("checking", lambda x: (x * 2, threading.get_ident()), 21)
    qtbot.waitUntil(lambda: call.done, timeout=10_000)
    value, thread = call.outcome
    assert value == 42 and thread != gui_thread


def test_a_ticket_cancelled_before_it_starts_ends_cancelled(qtbot, client, tiny_models, photos):
    image = ImageRef(str(photos / "scene0.png"), photos / "scene0.png")
    first = client.submit(CaptionRequest((image,) * 3, model=str(tiny_models[Task.CAPTION])))
    second = client.submit(CaptionRequest((image,), model=str(tiny_models[Task.CAPTION])))
    second.cancel()
    ends = []
    second.cancelled.connect(lambda: ends.append("cancelled"))
    second.ended.connect(lambda: ends.append("ended"))
    qtbot.waitUntil(lambda: first.done and second.done, timeout=120_000)
    assert first.outcome is not None and ends == ["cancelled", "ended"]
    second.cancel()  # long over: nothing happens

"""The model dialog's catalog: known models, one cached, one downloading from a local stand-in for the hub."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("PySide6")
pytestqt = pytest.importorskip("pytestqt")

from mmstudio.gui.qt_model_dialog import ModelDialog  # noqa: E402
from mmstudio.gui.worker import InferenceClient  # noqa: E402
from mmstudio.models import hub  # noqa: E402
from mmstudio.models.base import LoadOptions, Task  # noqa: E402
from mmstudio.models.loading import builtin_name  # noqa: E402
from mmstudio.resources import builtin_models_dir  # noqa: E402
from tests.hub_server import HubServer  # noqa: E402

CAPTIONER = "Salesforce/blip-image-captioning-base"
CLIP = "openai/clip-vit-base-patch32"
TIMEOUT = 60000


@pytest.fixture()
def hub_here(tmp_path, monkeypatch, family_models):
    upload = tmp_path / "upload"
    shutil.copytree(builtin_models_dir() / "caption", upload)
    with HubServer() as server:
        server.add_folder(CAPTIONER, upload)
        server.add_folder(CLIP, family_models["clip"])
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


@pytest.fixture()
def client():
    client = InferenceClient(LoadOptions(device="cpu"))
    yield client
    client.stop()


def row_of(catalog, repo_id) -> int:
    return next(i for i, m in enumerate(catalog.models) if m.id == repo_id)


def test_catalog_shows_the_cache_downloads_with_progress_cancels_resumes_and_offers_the_model(qtbot, hub_here,
                                                                                             client):
    hub.download(CLIP)
    current = {task: builtin_name(task) for task in Task}
    dialog = ModelDialog(current, LoadOptions(), client=client)
    qtbot.addWidget(dialog)
    dialog.show()
    catalog = dialog.catalog
    assert catalog.table.item(row_of(catalog, CLIP), 4).text().startswith("✓")
    assert catalog.table.item(row_of(catalog, CAPTIONER), 4).text() == ""
    assert str(hub.hub_cache()) in catalog.cache_label.text()

    hub_here.delay = 0.02  # about 3 MB/s: slow enough to watch, and to stop
    catalog.select(CAPTIONER)
    assert catalog.download_button.isEnabled()
    catalog.download_button.click()
    # Stop in the middle of the weights (7.5 of 9 MB, fetched last): a stop between two files leaves nothing
    # partial, and a resume then has no Range to ask for.
    qtbot.waitUntil(lambda: "MB/s" in catalog.status.text() and "model.safetensors" in catalog.status.text()
                    and catalog.progress.value() > 300, timeout=TIMEOUT)
    assert catalog.progress.isVisible() and catalog.cancel_button.isVisible()
    assert catalog.table.item(row_of(catalog, CAPTIONER), 4).text() == "downloading"
    catalog.cancel_button.click()
    qtbot.waitUntil(lambda: catalog.downloading is None, timeout=TIMEOUT)
    assert "stopped" in catalog.status.text()
    catalog.select(CAPTIONER)
    assert catalog.download_button.text() == "Resume download"

    hub_here.delay = 0.0
    catalog.download_button.click()
    qtbot.waitUntil(lambda: catalog.downloading is None, timeout=TIMEOUT)
    assert "is in the cache" in catalog.status.text(), catalog.status.text()
    assert any(r for _m, p, r in hub_here.requests if "/resolve/" in p and r), "resumed, not restarted"
    assert catalog.table.item(row_of(catalog, CAPTIONER), 4).text().startswith("✓")
    assert dialog.chosen_models()[Task.CAPTION] == CAPTIONER  # offered for its task, loaded on OK

    catalog.select(CLIP)
    removing = catalog.remove(CLIP)
    qtbot.waitUntil(lambda: removing.done, timeout=TIMEOUT)
    assert "Removed" in catalog.status.text()
    assert catalog.table.item(row_of(catalog, CLIP), 4).text() == ""
    assert [c.id for c in hub.cached()] == [CAPTIONER]


def test_offline_the_catalog_says_so_and_does_not_download(qtbot, hub_here, client, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dialog = ModelDialog({task: builtin_name(task) for task in Task}, LoadOptions(), client=client)
    qtbot.addWidget(dialog)
    dialog.catalog.select(CAPTIONER)
    assert not dialog.catalog.download_button.isEnabled()
    assert "offline" in dialog.catalog.cache_label.text()


def test_the_model_dialog_sets_threads_and_the_window_remembers_and_shows_them(qtbot, window):
    dialog = ModelDialog(window.models, window.options)
    qtbot.addWidget(dialog)
    assert dialog.threads.value() == 0 and dialog.threads.text() == "all cores"
    dialog.dtype.setCurrentText("int8")
    assert "CPU only" in dialog.precision_hint.text()
    dialog.threads.setValue(1)
    options = dialog.chosen_options()
    assert options.threads == 1 and options.dtype == "int8"
    qtbot.waitUntil(lambda: not window.model_loads, timeout=60000)
    window.load_model(Task.CAPTION, window.models[Task.CAPTION], LoadOptions(device="cpu", threads=1))
    qtbot.waitUntil(lambda: not window.model_loads, timeout=60000)
    assert window.settings.get("model/threads", int) == 1
    assert "1 CPU thread ·" in window.busy_label.text()

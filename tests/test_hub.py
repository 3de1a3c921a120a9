"""Downloads through huggingface_hub from a local stand-in for the hub (tests/hub_server.py), through HF_ENDPOINT.

Progress, cancel mid-file and resume, a corrupted file, offline mode, an unreachable server, a model with
pickle weights only; the cache listing and removal; the `mmstudio models` commands.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmstudio.engine import Engine
from mmstudio.errors import CancelledError, DownloadError
from mmstudio.models import hub
from mmstudio.models.base import LoadOptions, Task
from mmstudio.resources import builtin_models_dir
from tests.hub_server import HubServer

REPO = "shapes/blip-caption"


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    """The built-in caption model (7 MB of safetensors), plus what must never be fetched: pickle weights, code."""
    folder = tmp_path / "upload"
    shutil.copytree(builtin_models_dir() / "caption", folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle would run here" * 100)
    (folder / "modeling_evil.py").write_text("import os\n")
    return folder


@pytest.fixture()
def server(checkpoint, tmp_path, monkeypatch):
    with HubServer() as running:
        running.add_folder(REPO, checkpoint)
        monkeypatch.setenv("HF_ENDPOINT", running.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        yield running


def fetched(server) -> set[str]:
    return {path.rsplit("/", 1)[-1] for method, path, _ in server.requests if method == "GET" and "/resolve/" in path}


def test_download_reports_progress_fetches_only_what_loads_and_the_model_runs(server, checkpoint, monkeypatch,
                                                                             scene_images):
    events = []
    folder = hub.download(REPO, progress=events.append)
    assert fetched(server) == {p.name for p in checkpoint.iterdir() if p.suffix not in (".bin", ".py")}
    assert not (folder / "pytorch_model.bin").exists() and not (folder / "modeling_evil.py").exists()
    total = sum(p.stat().st_size for p in checkpoint.iterdir() if p.suffix not in (".bin", ".py"))
    assert all(e.total == total for e in events)
    dones = [e.done for e in events]
    assert dones == sorted(dones) and dones[-1] == total
    assert len({e.done for e in events if e.file == "model.safetensors"}) > 5  # a MiB at a time, not one jump
    assert "MB/s" in events[-1].text()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # from here on the cache alone
    caption = Engine(LoadOptions(device="cpu")).caption(scene_images[:1], model=REPO)[0].caption
    assert caption == Engine(LoadOptions(device="cpu")).caption(scene_images[:1], model="builtin:caption")[0].caption


def test_a_cancelled_download_resumes_where_it_stopped(server):
    server.delay = 0.01
    weights: list[int] = []  # bytes done while the weights came in

    def progress(event):
        if event.file == "model.safetensors":
            weights.append(event.done)

    def cancel():  # Stop, once two MiB of the weights have arrived
        if weights and weights[-1] - weights[0] >= 2 * hub.CHUNK:
            raise CancelledError("cancelled")

    with pytest.raises(CancelledError):
        hub.download(REPO, progress=progress, cancel=cancel)
    partial = list((hub.hub_cache() / f"models--{REPO.replace('/', '--')}" / "blobs").glob("*.incomplete"))
    # The library counts a chunk before it writes it: the one in flight at Stop is not kept.
    assert partial and partial[0].stat().st_size >= hub.CHUNK
    kept = partial[0].stat().st_size
    assert [c.incomplete for c in hub.cached()] == [kept]  # the listing shows what waits for a resume
    server.delay = 0.0
    server.requests.clear()
    folder = hub.download(REPO)
    ranges = [r for method, path, r in server.requests if method == "GET" and path.endswith("model.safetensors")]
    assert ranges == [f"bytes={kept}-"], "only the rest of the file is asked for"
    assert (folder / "model.safetensors").read_bytes() == (builtin_models_dir() / "caption" /
                                                           "model.safetensors").read_bytes()


def test_a_corrupted_file_is_detected_and_deleted(server):
    server.corrupt = {"model.safetensors"}
    with pytest.raises(DownloadError, match="model.safetensors arrived corrupted .*SHA-256"):
        hub.download(REPO)
    blobs = hub.hub_cache() / f"models--{REPO.replace('/', '--')}" / "blobs"
    sizes = [p.stat().st_size for p in blobs.iterdir()]
    assert (builtin_models_dir() / "caption" / "model.safetensors").stat().st_size not in sizes
    server.corrupt = set()
    assert (hub.download(REPO) / "model.safetensors").is_file()


def test_offline_names_the_cache_and_what_to_copy(server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError) as caught:
        hub.download(REPO)
    message = str(caught.value)
    assert "offline" in message and str(hub.hub_cache()) in message and "models--shapes--blip-caption" in message
    assert server.requests == []


def test_unreachable_missing_and_pickle_only_models_are_clear_errors(server, monkeypatch, tmp_path):
    pickle_only = tmp_path / "pickle-only"
    pickle_only.mkdir()
    (pickle_only / "config.json").write_text("{}")
    (pickle_only / "pytorch_model.bin").write_bytes(b"x" * 2000)
    server.add_folder("someone/old-model", pickle_only)
    with pytest.raises(DownloadError, match="no safetensors weights"):
        hub.download("someone/old-model")
    with pytest.raises(DownloadError, match="no such model"):
        hub.download("nobody/nothing")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(DownloadError, match="cannot reach http://127.0.0.1:9"):
        hub.download(REPO)


def test_cache_listing_and_removal(server):
    assert hub.cached() == []
    hub.download(REPO)
    [entry] = hub.cached()
    assert entry.id == REPO and entry.incomplete == 0 and entry.size > 7_000_000
    assert hub.remove(REPO) >= entry.size - 4096
    assert hub.cached() == []
    with pytest.raises(DownloadError, match="not in the cache"):
        hub.remove(REPO)


def test_models_commands(server, capsys):
    from mmstudio.cli import main

    assert main(["models", "download", REPO]) == 0
    out = capsys.readouterr()
    assert "downloaded" in out.out and REPO in out.out
    assert main(["models", "ls", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [cached] = [r for r in rows if r["name"] == REPO]
    assert cached["source"] == "hf-cache" and cached["tasks"] == ["caption"] and cached["size"] > 7_000_000
    assert main(["models", "known", "--json"]) == 0
    known = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"Salesforce/blip-image-captioning-base", "google/siglip-base-patch16-224"} <= {k["id"] for k in known}
    assert all(k["cached"] is False for k in known)
    assert main(["models", "rm", REPO]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["models", "rm", REPO]) == 2
    assert "not in the cache" in capsys.readouterr().err


def test_known_models_are_families_mmstudio_runs():
    from mmstudio.models.registry import FAMILIES

    families = {f.family for f in FAMILIES}
    entries = hub.known_models()
    assert len(entries) >= 12 and len({e.id for e in entries}) == len(entries)
    for entry in entries:
        assert entry.family in families and set(entry.tasks) <= {t.value for t in Task}
        assert entry.size_mb > 0 and entry.licence and entry.does


def test_hf_home_and_a_proxy_are_followed(server, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    # The hub's name does not resolve: only the proxy (our server, in its proxy role) can reach it.
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example.invalid")
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, server.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "")
    # The library reads the proxy variables when it makes its HTTP client, once a process: as at a fresh start.
    import huggingface_hub

    huggingface_hub.close_session()
    folder = hub.download(REPO)
    huggingface_hub.close_session()  # the next test's client without the proxy
    assert folder.is_relative_to(tmp_path / "hf-home" / "hub")
    assert server.proxied and all(url.startswith("http://hub.example.invalid/") for url in server.proxied)

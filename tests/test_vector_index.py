"""Nearest vectors: exact below a size, a graph index above it, kept beside the index and read back mapped."""

from __future__ import annotations

import numpy as np
import pytest

from mmstudio import vector_index
from mmstudio.engine import Engine
from mmstudio.models.base import Task
from mmstudio.vector_index import NearestIndex, best


def clustered(count: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters of about 20, as a model's embeddings of a collection are (bench/index_scale.py)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(count // 20, 1), dim))
    vectors = centres[rng.integers(0, len(centres), count)] + 0.5 * rng.standard_normal((count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_exact_below_the_size_and_ties_by_position():
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], np.float32)
    index = NearestIndex(vectors, exact_up_to=10)
    assert not index.approximate
    rows, scores = index.search(np.array([1, 0], np.float32), 3)
    assert rows.tolist() == [0, 2, 3] and scores.tolist() == pytest.approx([1, 1, 0.6])
    assert index.search(np.array([1, 0], np.float32), 0)[0].size == 0
    assert NearestIndex(np.zeros((0, 2), np.float32)).search(np.array([1, 0]), 5)[0].size == 0


def test_the_graph_finds_the_exact_neighbours_nearly_always():
    vectors = clustered(3000)
    queries = clustered(50, seed=1)
    index = NearestIndex(vectors, exact_up_to=100)
    assert index.approximate and index.built_seconds > 0
    found = 0
    for query in queries:
        rows, scores = index.search(query, 10)
        truth = best(vectors @ query, 10)
        found += len(set(rows.tolist()) & set(truth.tolist()))
        assert scores.tolist() == sorted(scores.tolist(), reverse=True)
        assert scores == pytest.approx(vectors[rows] @ query, abs=2e-3)  # half precision inside the graph
    assert found / (10 * len(queries)) >= 0.95


def test_the_graph_is_kept_read_back_and_rebuilt_when_damaged_or_for_other_pictures(tmp_path):
    vectors = clustered(500)
    keys = [f"k{i}" for i in range(len(vectors))]
    first = NearestIndex(vectors, keys=keys, cache=tmp_path, exact_up_to=100)
    saved = list(tmp_path.glob("nearest-*.usearch"))
    assert len(saved) == 1 and first.built_seconds > 0
    again = NearestIndex(vectors, keys=keys, cache=tmp_path, exact_up_to=100)
    assert again.built_seconds == 0 and again.note == ""  # mapped from the file, not rebuilt
    query = vectors[7]
    assert again.search(query, 5)[0].tolist() == first.search(query, 5)[0].tolist()

    saved[0].write_bytes(saved[0].read_bytes()[:1000])  # a file cut short by a full disk
    mended = NearestIndex(vectors, keys=keys, cache=tmp_path, exact_up_to=100)
    assert mended.built_seconds > 0 and "rebuilt" in mended.note
    assert mended.search(query, 1)[0].tolist() == [7]

    for n in range(4):  # other folders' graphs: the newest few are kept, not every one ever built
        NearestIndex(vectors[n:], keys=keys[n:], cache=tmp_path, exact_up_to=100)
    assert len(list(tmp_path.glob("nearest-*.usearch"))) == vector_index.KEEP_GRAPHS
    assert not list(tmp_path.glob("*.partial"))


def test_search_past_the_size_gives_the_exact_answers_of_a_small_collection(tmp_path, monkeypatch, tiny_models,
                                                                            scene_images):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    engine = Engine()
    name = str(tiny_models[Task.ITM])
    for i, image in enumerate(scene_images):
        image.save(tmp_path / f"scene{i}.png")
    sources = [(str(p), p) for p in sorted(tmp_path.glob("scene*.png"))]
    exact = engine.index(sources, model=name)
    expected = [(h.image, h.match) for h in engine.search(exact, "a small red circle", model=name, top_k=4)]
    monkeypatch.setattr(vector_index, "EXACT_UP_TO", 2)
    graph = engine.index(sources, model=name)
    assert graph.nearest().approximate
    hits = engine.search(graph, "a small red circle", model=name, top_k=4)
    assert [(h.image, h.match) for h in hits] == [(i, pytest.approx(m, abs=1e-6)) for i, m in expected]
    assert list(graph.cache.glob("nearest-*.usearch"))  # beside the index database


def test_a_graph_build_reports_progress_and_can_be_stopped_leaving_nothing_half_saved(tmp_path, monkeypatch):
    from mmstudio.errors import CancelledError

    monkeypatch.setattr(vector_index, "BUILD_BLOCK", 100)
    vectors = clustered(500)
    keys = [f"k{i}" for i in range(500)]
    seen = []
    NearestIndex(vectors, keys=keys, exact_up_to=100, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(100, 500), (200, 500), (300, 500), (400, 500), (500, 500)]

    calls = []

    def cancel():
        calls.append(1)
        if len(calls) > 2:
            raise CancelledError("stopped")

    with pytest.raises(CancelledError):
        NearestIndex(vectors, keys=keys, cache=tmp_path, exact_up_to=100, cancel=cancel)
    assert not list(tmp_path.iterdir())

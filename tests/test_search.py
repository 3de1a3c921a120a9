"""Search: an embedding index under the user cache, keyed by content hash, updated incrementally."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mmstudio.engine import Engine
from mmstudio.errors import UnsupportedTaskError
from mmstudio.imaging import load_image
from mmstudio.models.base import Task
from mmstudio.search import Collection, EmbeddingIndex, IndexReport, index_root, model_id, rerank


class CountingEmbedder:
    """The real model, with a count of the images it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.info, self.encoded = inner, inner.info, 0

    def image_features(self, images):
        self.encoded += len(images)
        return self.inner.image_features(images)

    def text_features(self, texts):
        return self.inner.text_features(texts)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def folder(tmp_path, scene_images):
    images = tmp_path / "photos"
    (images / "sub").mkdir(parents=True)
    for i, image in enumerate(scene_images):
        image.save(images / ("sub" if i % 2 else "") / f"scene{i}.png")
    (images / "notes.txt").write_text("not an image")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return images


@pytest.fixture()
def clip(family_models):
    return Engine().embedder(str(family_models["clip"]))


def test_index_lives_under_the_user_cache(cache, clip):
    index = EmbeddingIndex(clip)
    assert index.directory == cache / "mmstudio" / "index" / model_id(clip.info)
    assert index_root() == cache / "mmstudio" / "index"


def test_search_ranks_by_cosine_similarity(cache, folder, clip):
    index = EmbeddingIndex(clip)
    collection = index.collect_folder(folder)
    assert collection.report.images == 5 and collection.report.encoded == 5
    assert [name for name, _ in collection.report.failed] == [str(folder / "broken.png")]
    hits = index.search(collection, "a red circle", top_k=3)
    images = [load_image(name) for name in collection.names]
    expected = clip.image_features(images) @ clip.text_features(["a red circle"])[0]
    best = np.argsort(-expected)[:3]
    assert [h.image for h in hits] == [collection.names[i] for i in best]
    np.testing.assert_allclose([h.score for h in hits], expected[best], atol=1e-5)
    assert [h.rank for h in hits] == [1, 2, 3]


def test_reindexing_an_unchanged_folder_encodes_nothing(cache, folder, clip):
    counting = CountingEmbedder(clip)
    first = EmbeddingIndex(counting)
    before = first.collect_folder(folder)
    first.save()
    assert counting.encoded == 5
    again = EmbeddingIndex(counting)  # a new session reads the index from disk
    after = again.collect_folder(folder)
    assert counting.encoded == 5, "an unchanged folder re-encodes nothing"
    assert after.report == IndexReport(images=5, encoded=0, reused=5, failed=after.report.failed)
    assert after.names == before.names
    np.testing.assert_array_equal(after.vectors, before.vectors)


def test_only_new_pixels_are_encoded(cache, folder, clip, scene_images):
    from PIL import ImageOps

    counting = CountingEmbedder(clip)
    index = EmbeddingIndex(counting)
    index.collect_folder(folder)
    index.save()
    (folder / "copy.png").write_bytes((folder / "scene0.png").read_bytes())  # same pixels, a new file
    ImageOps.mirror(scene_images[2]).save(folder / "scene2.png")  # new pixels in a known file
    os.remove(folder / "sub" / "scene1.png")
    counting.encoded = 0
    index = EmbeddingIndex(counting)
    collection = index.collect_folder(folder)
    assert counting.encoded == 1
    assert collection.report.images == 5 and collection.report.reused == 4
    assert str(folder / "sub" / "scene1.png") not in collection.names
    copy = collection.names.index(str(folder / "copy.png"))
    original = collection.names.index(str(folder / "scene0.png"))
    np.testing.assert_array_equal(collection.vectors[copy], collection.vectors[original])


def test_a_damaged_index_is_rebuilt(cache, folder, clip):
    index = EmbeddingIndex(clip)
    index.collect_folder(folder)
    index.save()
    index.store.close()
    (index.directory / "index.sqlite").write_bytes(b"garbage")
    counting = CountingEmbedder(clip)
    assert EmbeddingIndex(counting).collect_folder(folder).report.encoded == 5 == counting.encoded


def test_pixels_without_a_file_are_indexed_by_content(cache, clip, scene_images):
    index = EmbeddingIndex(clip)
    collection = index.collect([("clipboard:1", scene_images[0]), ("clipboard:2", scene_images[0].copy())])
    assert collection.report.encoded == 1 and collection.names == ("clipboard:1", "clipboard:2")


def test_rank_edges():
    vectors = np.eye(3, dtype=np.float32)
    collection = Collection(("a", "b", "c"), vectors, IndexReport(3, 0, 3))
    assert [h.image for h in collection.rank(np.array([0.0, 1.0, 0.5]), top_k=10)] == ["b", "c", "a"]
    assert [h.image for h in collection.rank(np.array([1.0, 1.0, 0.0]), top_k=1)] == ["a"]  # ties: first
    assert collection.rank(np.array([1.0, 0, 0]), top_k=0) == []
    empty = Collection((), np.zeros((0, 3), np.float32), IndexReport(0, 0, 0))
    assert empty.rank(np.ones(3), top_k=5) == []


def test_engine_search_with_blip_retrieval_and_refusal_of_others(cache, folder, tiny_models, family_models):
    engine = Engine()
    name = str(tiny_models[Task.ITM])
    collection = engine.index([(str(p), p) for p in sorted(folder.glob("*.png"))], model=name)
    assert collection.report.encoded == 3  # scene0, 2 and 4 (broken.png fails)
    assert len(engine.search(collection, "a small red circle", model=name, top_k=5)) == 3
    assert (engine.search_index(name).directory / "index.sqlite").is_file(), "engine.index saves"
    with pytest.raises(UnsupportedTaskError):
        engine.embedder(str(family_models["vilt"]))


def test_rerank_orders_the_best_by_the_matching_head_and_keeps_the_rest_by_embedding():
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.2])
    asked = []

    def match(indices):
        asked.append(sorted(indices.tolist()))
        return np.array([{0: 0.1, 2: 0.9, 3: 0.5}[i] for i in indices.tolist()])

    order, probability = rerank(scores, match, depth=3)
    assert asked == [[0, 2, 3]]  # only the three best by embedding are read again
    assert order.tolist() == [2, 3, 0, 4, 1]
    assert probability[[0, 2, 3]].tolist() == [0.1, 0.9, 0.5] and np.isnan(probability[[1, 4]]).all()
    assert rerank(scores, match, depth=0)[0].tolist() == [0, 2, 3, 4, 1]


def test_blip_search_reranks_with_the_matching_head(cache, folder, tiny_models):
    engine = Engine()
    name = str(tiny_models[Task.ITM])
    files = sorted(folder.rglob("scene*.png"))
    collection = engine.index([(str(p), p) for p in files], model=name)
    query = "a small red circle"
    hits = engine.search(collection, query, model=name, top_k=5)
    # Every hit was re-ranked (5 images < the depth), best match first, with the head's own probability.
    assert [h.match for h in hits] == sorted((h.match for h in hits), reverse=True)
    for hit in hits:
        assert hit.match == pytest.approx(engine.match(load_image(hit.image), [query], model=name)[0].itm, abs=1e-4)
    plain = engine.search(collection, query, model=name, top_k=5, depth=0)
    assert all(h.match is None for h in plain)
    assert [h.score for h in plain] == sorted((h.score for h in plain), reverse=True)
    # A file gone since it was indexed keeps its embedding's place, after every image read again.
    gone = Path(hits[0].image)
    gone.unlink()
    again = engine.search(collection, query, model=name, top_k=5)
    assert again[-1].image == str(gone) and again[-1].match is None
    assert engine.search(collection, query, model=name, top_k=2, depth=2)[0].match is not None


def test_two_writers_keep_each_others_work(cache, tmp_path, clip, scene_images):
    """Two sessions (two windows, or the app and the CLI) index different folders into one index."""
    first, second = tmp_path / "a", tmp_path / "b"
    for i, image in enumerate(scene_images):
        (first if i < 3 else second).mkdir(exist_ok=True)
        image.save((first if i < 3 else second) / f"scene{i}.png")
    counting = CountingEmbedder(clip)
    one, two = EmbeddingIndex(counting), EmbeddingIndex(counting)  # both opened before either saved
    one.collect_folder(first)
    two.collect_folder(second)
    one.save()
    two.save()  # merges what `one` saved instead of replacing it
    counting.encoded = 0
    both = EmbeddingIndex(counting)
    assert both.collect_folder(first).report.encoded == 0
    assert both.collect_folder(second).report.encoded == 0 == counting.encoded
    assert len(both) == 5


def test_the_index_forgets_deleted_files(cache, folder, clip):
    from PIL import ImageOps

    index = EmbeddingIndex(clip)
    index.collect_folder(folder)
    index.save()
    assert len(EmbeddingIndex(clip)) == 5
    os.remove(folder / "sub" / "scene1.png")
    later = EmbeddingIndex(clip)  # a later session that indexes only a pasted image
    later.collect([("clipboard:1", ImageOps.mirror(load_image(folder / "scene0.png")))])
    later.save()
    reopened = EmbeddingIndex(clip)
    assert len(reopened) == 5 and str(folder / "sub" / "scene1.png") not in reopened.files
    counting = CountingEmbedder(clip)
    assert EmbeddingIndex(counting).collect_folder(folder).report.encoded == 0 == counting.encoded


def test_image_queries_rank_by_looks_from_the_engine_and_the_cli(cache, folder, clip, family_models, capsys):
    from mmstudio.cli import main

    engine = Engine()
    model = str(family_models["clip"])
    collection = engine.index([(str(p), p) for p in sorted(folder.rglob("scene*.png"))], model=model)
    query = load_image(folder / "sub" / "scene1.png")
    hits = engine.search_like(collection, query, model=model, top_k=3)
    assert hits[0].image == str(folder / "sub" / "scene1.png") and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert main(["search", "--index", str(folder), "--model", model, "--like", str(folder / "scene0.png"),
                 "--top", "2", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and '"rank": 1' in lines[0] and "scene0.png" in lines[0]
    assert main(["search", "--index", str(folder), "--model", model, "--like", str(folder / "scene0.png"),
                 "a text"]) == 2
    assert "not both" in capsys.readouterr().err

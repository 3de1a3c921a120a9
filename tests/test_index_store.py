"""The search index's SQLite store: a kill at any moment, or a crash at any write, leaves it consistent, and
damaged files are noticed and rebuilt, never a traceback or a wrong ranking."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from mmstudio.engine import Engine
from mmstudio.imaging import content_key, load_image
from mmstudio.index_store import DATABASE, IndexStore
from mmstudio.models.base import Task
from mmstudio.search import EmbeddingIndex
from tests.test_search import CountingEmbedder


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def clip(family_models):
    return Engine().embedder(str(family_models["clip"]))


@pytest.fixture()
def pictures(tmp_path, scene_images):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(40):
        scene_images[i % len(scene_images)].rotate(9 * i).save(folder / f"p{i:02d}.png")
    return folder


def consistent(directory, folder) -> None:
    """Every picture once, under its own pixels' key, with an embedding of unit length."""
    db = sqlite3.connect(directory / DATABASE)
    files = dict(((path, key) for path, key in db.execute("SELECT path, key FROM files")))
    vectors = {key: np.frombuffer(blob, np.float32) for key, blob in db.execute("SELECT key, vector FROM embeddings")}
    db.close()
    assert sorted(files) == sorted(str(p) for p in folder.iterdir())
    for path, key in files.items():
        assert key == content_key(load_image(path)) and key in vectors
        assert abs(np.linalg.norm(vectors[key]) - 1) < 1e-3


@pytest.mark.slow
def test_killed_at_random_moments_indexing_goes_on_and_each_file_is_indexed_once(cache, tiny_models, pictures):
    model = str(tiny_models[Task.ITM])
    command = [sys.executable, "-m", "mmstudio", "index", "--model", model, str(pictures)]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    rng = random.Random(20261202)
    for _ in range(4):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(rng.uniform(1.0, 4.0))  # loading the model, reading, encoding or saving
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert "(0 encoded, 40 unchanged)" in again.stderr
    index = EmbeddingIndex(Engine().embedder(model))
    consistent(index.directory, pictures)


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_inside_any_write_leaves_the_last_whole_batch(cache, clip, pictures, monkeypatch, crash_at):
    """KeyboardInterrupt in the middle of a batch's transaction (embeddings written, file records not yet)."""
    calls = {"n": 0}
    real = sqlite3.Connection.executemany

    class Crash(KeyboardInterrupt):
        pass

    def crashing(db, sql, rows):
        if sql.startswith("INSERT OR REPLACE INTO files"):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise Crash
        return real(db, sql, rows)

    index = EmbeddingIndex(clip)
    monkeypatch.setattr(index.store, "_transaction", _patched_transaction(index.store, crashing))
    with pytest.raises(Crash):
        index.collect_folder(pictures, batch_size=16)
    index.store.close()
    saved = sqlite3.connect(index.directory / DATABASE)
    keys = {row[0] for row in saved.execute("SELECT key FROM embeddings")}
    files = saved.execute("SELECT count(*) FROM files").fetchone()[0]
    saved.close()
    assert len(keys) == files == 16 * (crash_at - 1)  # whole batches only
    counting = CountingEmbedder(clip)
    after = EmbeddingIndex(counting)
    after.collect_folder(pictures, batch_size=16)
    after.save()
    assert counting.encoded == 40 - 16 * (crash_at - 1)
    consistent(after.directory, pictures)


def _patched_transaction(store, executemany):
    from mmstudio.index_store import _Transaction

    class Patched(_Transaction):
        def __enter__(self):
            db = super().__enter__()
            return _Proxy(db, executemany)

    return lambda: Patched(store._db)


class _Proxy:
    def __init__(self, db, executemany):
        self._db, self._executemany = db, executemany

    def executemany(self, sql, rows):
        return self._executemany(self._db, sql, rows)

    def __getattr__(self, name):
        return getattr(self._db, name)


def damage(directory, how: str) -> None:
    path = directory / DATABASE
    if how == "garbage":
        path.write_bytes(b"not a database at all" * 100)
        return
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3])
        return
    db = sqlite3.connect(path)
    key = db.execute("SELECT key FROM embeddings LIMIT 1").fetchone()[0]
    if how == "wrong width":
        db.execute("UPDATE embeddings SET vector = ? WHERE key = ?", (np.ones(7, np.float32).tobytes(), key))
    elif how == "nan":
        vector = np.full(len(db.execute("SELECT vector FROM embeddings").fetchone()[0]) // 4, np.nan, np.float32)
        db.execute("UPDATE embeddings SET vector = ? WHERE key = ?", (vector.tobytes(), key))
    elif how == "wrong type":
        db.execute("UPDATE files SET size = 'large' WHERE key = ?", (key,))
        db.execute("UPDATE embeddings SET vector = 12 WHERE key <> ? AND rowid = 2", (key,))
    elif how == "other version":
        db.execute("UPDATE meta SET value = '99' WHERE name = 'version'")
    db.commit()
    db.close()


@pytest.mark.parametrize("how", ["garbage", "truncated", "wrong width", "nan", "wrong type", "other version"])
def test_a_damaged_index_is_noticed_and_rebuilt_and_ranks_right(cache, clip, pictures, how):
    index = EmbeddingIndex(clip)
    reference = index.collect_folder(pictures)
    index.save()
    index.store.close()
    damage(index.directory, how)
    counting = CountingEmbedder(clip)
    again = EmbeddingIndex(counting)
    collection = again.collect_folder(pictures)
    assert collection.report.notes and str(index.directory) in collection.report.notes[0]
    assert 1 <= counting.encoded <= 40
    query = clip.text_features(["a red circle"])[0]
    assert [h.image for h in collection.rank(query, 10)] == [h.image for h in reference.rank(query, 10)]
    again.save()
    assert EmbeddingIndex(clip).notes == ()  # rebuilt: the next session finds nothing wrong


def test_a_read_only_cache_still_searches_and_says_why_it_cannot_save(cache, clip, pictures):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        blocked = cache / "mmstudio"
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_text("a file where the cache folder should be")  # root writes anywhere: block it so
    else:
        cache.mkdir(parents=True)
        os.chmod(cache, 0o500)
    try:
        index = EmbeddingIndex(clip)
        collection = index.collect_folder(pictures)
        index.save()
    finally:
        if cache.is_dir():
            os.chmod(cache, 0o700)
    assert collection.report.images == 40 and "searching in memory" in collection.report.notes[0]
    assert len(collection.rank(clip.text_features(["a red circle"])[0], 5)) == 5


def test_the_store_keeps_one_row_per_key_and_path(tmp_path):
    store = IndexStore(tmp_path, "m")
    vectors = np.eye(3, dtype=np.float32)
    store.add(["a", "b"], vectors[:2], {"/x": (1, 2, "a")})
    store.add(["a"], vectors[2:], {"/x": (1, 3, "a"), "/y": (4, 5, "b")})  # a later record replaces
    keys, matrix, files = store.load()
    assert sorted(keys) == ["a", "b"] and files == {"/x": (1, 3, "a"), "/y": (4, 5, "b")}
    assert matrix.shape == (2, 3)


def test_index_progress_json_for_programs(cache, tiny_models, pictures, capsys):
    import json

    from mmstudio.cli import main

    (pictures / "broken.png").write_bytes(b"not a picture")
    assert main(["index", "--model", str(tiny_models[Task.ITM]), "--batch-size", "16", "--progress", "json",
                 str(pictures)]) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    progress = [e["done"] for e in events if e["event"] == "progress"]
    assert progress == [17, 33, 41] and all(e.get("total", 41) == 41 for e in events)  # a batch each (broken.png first)
    assert events[-1]["event"] == "indexed" and events[-1]["encoded"] == 40 and events[-1]["reused"] == 0
    assert events[-1]["unreadable"][0]["image"].endswith("broken.png")


def test_pixels_pruned_from_the_database_are_encoded_again_not_recorded_against_nothing(cache, clip, pictures):
    import shutil

    counting = CountingEmbedder(clip)
    index = EmbeddingIndex(counting)
    index.collect_folder(pictures)
    index.save()
    reopened = EmbeddingIndex(counting)  # a later session: these keys are not its own collection's
    away = pictures.parent / "away.png"
    shutil.move(pictures / "p07.png", away)  # moved out (the Duplicates tab's Trash, say)
    from PIL import ImageOps

    reopened.collect([("clipboard:1", ImageOps.mirror(load_image(pictures / "p00.png")))])  # new: save tidies up
    reopened.save()
    shutil.move(away, pictures / "p07.png")  # and back (Undo)
    counting.encoded = 0
    reopened.collect_folder(pictures)
    reopened.save()
    assert counting.encoded == 1  # its embedding went with the file: encoded again
    consistent(reopened.directory, pictures)
    assert EmbeddingIndex(clip).notes == ()


def test_a_large_index_maps_its_vectors_from_a_snapshot_that_follows_the_database(tmp_path, monkeypatch):
    from mmstudio import index_store

    monkeypatch.setattr(index_store, "SNAPSHOT_FROM", 5)
    rng = np.random.default_rng(0)

    def unit(count):
        vectors = rng.standard_normal((count, 8)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    first = unit(10)
    store = IndexStore(tmp_path, "m")
    store.add([f"k{i}" for i in range(10)], first, {})
    keys, vectors, _ = store.load()  # read from the database, snapshot written
    assert not isinstance(vectors, np.memmap) and np.array_equal(vectors, first)
    (snapshot,) = tmp_path.glob("vectors-*.npy")
    store.close()

    store = IndexStore(tmp_path, "m")
    again, mapped, _ = store.load()
    assert isinstance(mapped, np.memmap) and again == keys and np.array_equal(mapped, first)
    store.add(["k10"], unit(1), {})
    grown_keys, grown, _ = store.load()  # the database moved on: read again, a new snapshot
    assert len(grown_keys) == 11 and not isinstance(grown, np.memmap)
    assert [p.name for p in tmp_path.glob("vectors-*.npy")] != [snapshot.name]
    assert len(list(tmp_path.glob("vectors-*.npy"))) == 1
    store.close()

    (snapshot,) = tmp_path.glob("vectors-*.npy")
    snapshot.write_bytes(snapshot.read_bytes()[:100])  # cut short: the database serves, a snapshot is rewritten
    store = IndexStore(tmp_path, "m")
    keys3, vectors3, _ = store.load()
    assert keys3 == grown_keys and np.array_equal(vectors3, grown) and not store.notes
    assert isinstance(IndexStore(tmp_path, "m").load()[1], np.memmap)

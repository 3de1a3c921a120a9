"""`mmstudio map`: the collection's plane as JSON lines and a picture, its layout kept with the index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmstudio.cli import main
from mmstudio.embedding_map import cached_layout, pca_layout
from mmstudio.engine import Engine
from mmstudio.imaging import load_image


@pytest.fixture()
def pictures(tmp_path, monkeypatch, scene_images):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, image in enumerate(scene_images):
        image.save(folder / f"scene{i:02d}.png")
    return folder


def run(capsys, *argv) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, [json.loads(x) for x in out.out.splitlines() if x.startswith("{")], out.err


def test_map_prints_each_picture_places_a_query_draws_and_keeps_the_layout(pictures, tmp_path, capsys):
    out = tmp_path / "map.png"
    code, lines, err = run(capsys, "map", str(pictures), "--json", "--query", "a red circle", "--near", "3",
                           "--out", str(out), "--size", "640x480")
    assert code == 0, err
    images, query = lines[:-1], lines[-1]
    assert sorted(line["image"] for line in images) == sorted(str(p) for p in pictures.glob("*.png"))
    assert sum(line["marked"] for line in images) == 3 and query["query"] == "a red circle"
    with Image.open(out) as drawn:
        assert drawn.size == (640, 480)

    engine = Engine()
    collection = engine.index([(line["image"], load_image(line["image"])) for line in images])
    expected = pca_layout(collection.vectors).xy
    assert np.allclose([[line["x"], line["y"]] for line in images], expected, atol=1e-4)
    nearest = {images[i]["image"] for i in collection.nearest().search(
        engine.embedder().text_features(["a red circle"])[0], 3)[0]}
    assert nearest == {line["image"] for line in images if line["marked"]}

    kept = list((tmp_path / "cache").rglob("map-*.npz"))
    assert len(kept) == 1  # beside the index database, named by the pictures it lays out
    before = kept[0].stat().st_mtime_ns
    assert run(capsys, "map", str(pictures), "--json")[0] == 0
    assert kept[0].stat().st_mtime_ns == before  # read back, not computed again


def test_a_damaged_kept_layout_is_computed_again(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [str(i) for i in range(30)]
    first = cached_layout(vectors, keys, tmp_path)
    (kept,) = tmp_path.glob("map-*.npz")
    kept.write_bytes(b"not a layout")
    assert np.allclose(cached_layout(vectors, keys, tmp_path).xy, first.xy)
    assert cached_layout(vectors, keys, None).xy.shape == (30, 2)  # nowhere to keep it: computed


def test_color_by_marks_the_pictures_whose_caption_has_the_word(pictures, capsys):
    code, lines, err = run(capsys, "map", str(pictures), "--json", "--color-by", "Red")
    assert code == 0, err
    captions = {str(p): r.caption for p, r in zip(sorted(pictures.glob("*.png")),
                                                   Engine().caption([load_image(p) for p in
                                                                     sorted(pictures.glob("*.png"))]))}
    assert {line["image"] for line in lines if line["marked"]} == {
        name for name, caption in captions.items() if "red" in caption.split()}


@pytest.mark.parametrize("argv, says", [([], "--out"), (["--json", "--size", "10x10"], "--size")])
def test_map_refuses_what_it_cannot_do(pictures, capsys, argv, says):
    code = main(["map", str(pictures), *argv])
    assert code != 0 and says in capsys.readouterr().err


def test_umap_layout_from_a_vectors_file_and_refused_for_too_few_pictures(pictures, tmp_path, capsys):
    pytest.importorskip("umap")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16))
    vectors = centres[np.repeat(np.arange(3), 20)] + 0.05 * rng.standard_normal((60, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    assert main(["layout", str(tmp_path / "v.npy"), str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as saved:
        xy, method = saved["xy"], str(saved["method"])
    assert method == "umap" and xy.shape == (60, 2)
    groups = [xy[i * 20:(i + 1) * 20].mean(axis=0) for i in range(3)]
    spread = max(float(np.linalg.norm(xy[i * 20:(i + 1) * 20] - groups[i], axis=1).max()) for i in range(3))
    apart = min(float(np.linalg.norm(groups[i] - groups[j])) for i in range(3) for j in range(i))
    assert apart > spread  # three groups of alike vectors land as three separate islands

    code = main(["map", str(pictures), "--json", "--layout", "umap"])
    assert code != 0 and "more than 15 pictures" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros(3))
    assert main(["layout", str(tmp_path / "bad.npy"), str(tmp_path / "o.npz")]) != 0
    assert "(N, D)" in capsys.readouterr().err


def test_without_umap_the_message_says_how_to_have_it(monkeypatch):
    from mmstudio import embedding_map

    assert "pip install 'mmstudio[umap]'" in embedding_map.umap_missing()
    monkeypatch.setattr("sys.frozen", True, raising=False)
    assert "installed app has no UMAP" in embedding_map.umap_missing()  # the installer leaves it out

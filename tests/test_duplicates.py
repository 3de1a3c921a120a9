"""Near-duplicates: resized, JPEG 40, 90 %-crop and re-saved PNG copies group with their original; different
scenes do not. Precision and recall over pairs of pictures, on a set generated here."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from mmstudio.cli import main
from mmstudio.duplicates import find_duplicates
from mmstudio.world import render_scene, sample_scene
from tests.out_of_world_images import landscape, shaded_blobs, text

COPIES = ("resized", "jpeg40", "crop90", "png")


def copy_set(folder, originals: int, unrelated: int, seed: int) -> dict[str, int]:
    """Write originals, their four copies each, and unrelated pictures; {file name: true group}."""
    rng = np.random.default_rng(seed)
    makers = [lambda r: render_scene(sample_scene(r))] * 3 + [landscape, text, shaded_blobs]
    truth = {}
    for group in range(originals):
        image = makers[group % len(makers)](rng)
        width, height = image.size
        image.save(folder / f"g{group:03d}.png")
        image.resize((width // 2, height // 2)).save(folder / f"g{group:03d}-resized.png")
        image.save(folder / f"g{group:03d}-jpeg40.jpg", quality=40)
        x, y = rng.integers(0, width // 10 + 1), rng.integers(0, height // 10 + 1)
        image.crop((x, y, x + int(width * 0.9), y + int(height * 0.9))).save(folder / f"g{group:03d}-crop90.png")
        image.save(folder / f"g{group:03d}-png.png", optimize=True, compress_level=9)  # other bytes, same pixels
        truth.update({f"g{group:03d}{suffix}": group for suffix in ("", *(f"-{c}" for c in COPIES))})
    for i in range(unrelated):
        (render_scene(sample_scene(rng)) if i % 4 else makers[3 + i % 3](rng)).save(folder / f"u{i:03d}.png")
        truth[f"u{i:03d}"] = -1 - i
    return truth


def pair_scores(report, truth: dict[str, int]) -> tuple[float, float]:
    found = {}
    for number, group in enumerate(report.groups):
        for member in group.members:
            found[member.image.rsplit("/", 1)[-1].rsplit(".", 1)[0]] = number
    right = predicted = actual = 0
    for a, b in itertools.combinations(sorted(truth), 2):
        same = truth[a] == truth[b]
        guessed = a in found and found.get(a) == found.get(b)
        actual += same
        predicted += guessed
        right += same and guessed
    return right / max(1, predicted), right / max(1, actual)


@pytest.mark.slow
def test_copies_group_with_their_original_and_different_pictures_do_not(tmp_path):
    truth = copy_set(tmp_path, originals=60, unrelated=240, seed=20261202)
    report = find_duplicates([str(p) for p in sorted(tmp_path.iterdir())])
    precision, recall = pair_scores(report, truth)
    print(f"duplicates: {len(truth)} pictures, {len(report.groups)} groups, pair precision {precision:.3f}, "
          f"recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.95


def test_cli_lists_groups_largest_first_with_exact_copies_marked(tmp_path, capsys):
    truth = copy_set(tmp_path, originals=3, unrelated=6, seed=7)
    (tmp_path / "notes.txt").write_text("not a picture")
    assert main(["duplicates", "--json", str(tmp_path)]) == 0  # a folder walk skips non-image names
    groups = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(groups) == 3 and all(len(g["images"]) == 5 for g in groups)
    for g in groups:
        names = [m["image"].rsplit("/", 1)[-1] for m in g["images"]]
        first = names[0].split("-")[0].split(".")[0]
        assert {truth[n.rsplit(".", 1)[0]] for n in names} == {truth[first]}
        sizes = [m["width"] * m["height"] for m in g["images"]]
        assert sizes[0] == max(sizes)  # the one to keep comes first
        exact = {n for n, m in zip(names, g["images"]) if m["exact"]}
        assert exact == {f"{first}.png", f"{first}-png.png"}  # the PNG saved again has the same pixels
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    assert main(["duplicates", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "group 1: 5 pictures, near copies" in captured.out and "keep?" in captured.out
    assert "broken.png" in captured.err and "3 groups, 12 copies, 1 unreadable" in captured.err
    assert main(["duplicates", "--threshold", "0", str(tmp_path)]) == 2

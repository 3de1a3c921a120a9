"""The CLI on the other families: caption/ask/match with ViT-GPT2, ViLT and CLIP, `match --labels`, `search`."""

from __future__ import annotations

import json

import pytest

from mmstudio.cli import main


def run(capsys, *argv) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_caption_and_ask_with_other_families(capsys, family_models, photos):
    code, rows, _ = run(capsys, "caption", "--model", str(family_models["vit-gpt2"]), "--json", "--attention",
                        str(photos / "scene0.png"))
    assert code == 0 and rows[0]["grid"] == [4, 4] and len(rows[0]["attention"]) == len(rows[0]["tokens"])
    code, rows, _ = run(capsys, "ask", "--model", str(family_models["vilt"]), "--json", "--attention",
                        str(photos / "scene1.png"), "what color is the circle?")
    assert code == 0 and rows[0]["answer"] and rows[0]["tokens"][0] == "what"


def test_a_family_is_offered_only_its_tasks(capsys, family_models, photos):
    code = main(["ask", "--model", str(family_models["clip"]), str(photos / "scene0.png"), "what is it?"])
    assert code == 2 and "cannot do vqa (it does itm)" in capsys.readouterr().err
    code = main(["search", "--index", str(photos), "--model", str(family_models["vit-gpt2"]), "circle"])
    assert code == 2 and "cannot do itm (it does caption)" in capsys.readouterr().err


def test_match_labels_equal_the_zero_shot_pipeline(capsys, family_models, scene_images, photos):
    from transformers import pipeline

    labels = ["red circle", "blue square", "yellow star"]
    classifier = pipeline("zero-shot-image-classification", model=str(family_models["clip"]))
    expected = classifier(scene_images[3], candidate_labels=labels, hypothesis_template="a photo of a {}")
    # The pipeline computes in fp32 on the CPU: so must we, whatever $MMSTUDIO_DEVICE/$MMSTUDIO_DTYPE say.
    code, rows, _ = run(capsys, "match", "--model", str(family_models["clip"]), "--device", "cpu", "--dtype", "fp32",
                        "--json", "--labels",
                        ",".join(labels), "--template", "a photo of a {}", str(photos / "scene3.png"))
    assert code == 0
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    assert [r["probability"] for r in rows] == pytest.approx([e["score"] for e in expected], abs=1e-5)
    code, rows, _ = run(capsys, "match", "--model", str(family_models["clip"]), "--labels", "just one",
                        str(photos / "scene3.png"))
    assert code == 2


def test_search_prints_ranked_images_and_reindexes_nothing(capsys, family_models, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["search", "--index", str(photos), "--model", str(family_models["clip"]), "--top", "3", "--json",
            "a", "red", "circle"]
    code, rows, err = run(capsys, *argv)
    assert code == 0 and "5 encoded" in err
    assert [sorted(r) for r in rows] == [["image", "in_domain", "match", "rank", "score", "unknown_words"]] * 3
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["match"] for r in rows] == [None] * 3  # CLIP has no matching head to re-rank with
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    code, again, err = run(capsys, *argv)
    assert code == 0 and "0 encoded, 5 unchanged" in err and again == rows
    assert any((tmp_path / "cache" / "mmstudio" / "index").iterdir())

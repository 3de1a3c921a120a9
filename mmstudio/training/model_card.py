"""Model cards: what a built-in model is, how it was made, and what it measured."""

from __future__ import annotations

import json
from pathlib import Path

from mmstudio.models.base import Task

WHAT = {
    Task.CAPTION: ("caption", "BlipForConditionalGeneration", "Captions a Shapes World scene left to right."),
    Task.VQA: ("vqa", "BlipForQuestionAnswering", "Answers the Shapes World questions with one word."),
    Task.ITM: ("retrieval", "BlipForImageTextRetrieval",
               "Scores how well a text matches a scene (ITM head) and embeds images and texts (ITC)."),
}
NAMES = {
    "exact_match": "caption exact match", "bleu4": "BLEU-4", "caption_pointing": "caption pointing accuracy",
    "accuracy": "VQA accuracy (all questions)", "question_pointing": "question pointing accuracy",
    "itm_accuracy": "ITM accuracy (captions and hard negatives, threshold 0.5)",
    "itm_pairwise_accuracy": "ITM pairwise accuracy (caption above each hard negative)",
    "recall_at_1": "text-to-image recall@1 among 100 scenes (ITC)",
    "itm_partial_accuracy": "ITM accuracy (partial descriptions and their near misses, threshold 0.5)",
    "itm_decision_accuracy": "ITM accuracy (all of the above together, threshold 0.5)",
    "search_map_one_object": "search mean average precision, one-object queries over the whole set (ITC)",
    "accuracy_v1_kinds": "VQA accuracy (the spec's question kinds, absent objects left out)",
}


def _table(report: dict) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    for key, value in report.get("metrics", {}).items():
        if key.startswith("accuracy_"):
            continue
        lines.append(f"| {NAMES.get(key, key)} | {value:.2%} |" if value <= 1 else f"| {key} | {value:.3f} |")
    for kind, value in sorted(report.get("per_kind", {}).items()):
        lines.append(f"| VQA accuracy: {kind} | {value:.2%} |")
    return lines


def write_model_card(folder: Path, task: Task, record: dict, *, recipe_command: str,
                     heldout: dict | None = None, extra: str = "", train_scenes: int | None = None) -> Path:
    name, arch, purpose = WHAT[Task(task)]
    parameters = record.get("parameters")
    config = json.loads((folder / "config.json").read_text())
    vision, text = config["vision_config"], config["text_config"]
    validation = record.get("validation", {})
    lines = [
        f"# mmstudio built-in model: {name}",
        "",
        f"{purpose} A `{arch}` checkpoint in the Hugging Face format (safetensors), so "
        f"`BlipProcessor.from_pretrained(dir)` and `{arch}.from_pretrained(dir)` load it without mmstudio.",
        "",
        "## Architecture",
        f"- ViT: {vision['image_size']} px input, {vision['patch_size']} px patches "
        f"({vision['image_size'] // vision['patch_size']}x{vision['image_size'] // vision['patch_size']} grid), "
        f"{vision['num_hidden_layers']} layers, hidden {vision['hidden_size']}",
        f"- text transformer: {text['num_hidden_layers']} layers, hidden {text['hidden_size']}, "
        f"word-level vocabulary of {text['vocab_size']} tokens (BLIP's special tokens)",
    ]
    if parameters:
        lines.append(f"- {parameters / 1e6:.2f}M parameters")
    rows = (record.get("config") or {}).get("rows")
    subset = f" on the first {rows:,} of those scenes" if rows else ""
    lines += [
        "",
        "## Data and recipe",
        "Trained by the project on Shapes World (`shared/specs/shapes-world.md`): "
        f"{f'{train_scenes:,} ' if train_scenes else ''}generated scenes "
        "(seed 1) with the full rendering variation. The caption model learns to see from scratch (caption "
        "loss plus an auxiliary patch-label loss from the scenes' boxes); the VQA model starts from its vision "
        "encoder and text decoder, and the retrieval model from its vision encoder with the caption decoder's "
        "text layers as its fusion text encoder (they already bind each word to its object through "
        "cross-attention, in left-to-right order). Retrain all three with one command:",
        "",
        f"    {recipe_command}",
        "",
        f"Training of this model: {record.get('steps', '?')} steps{subset}; the whole recipe's times are in "
        "`resources/models/README.md`.",
        "",
        f"## Measured on {validation.get('count', '?')} fresh validation scenes (seed 2000, never used in training)",
        "",
        *_table(validation),
    ]
    if record.get("calibration"):
        c = record["calibration"]
        lines += ["", f"The ITM head's bias was shifted by {c['margin_shift']:+.2f} logits so that probability 0.5 "
                      "is the cut that best separates true texts (captions, partial descriptions) from their hard "
                      "negatives and near misses on the 300-scene selection "
                      f"set ({c['selection_accuracy_before']:.2%} before, {c['selection_accuracy_after']:.2%} after "
                      "on that set); rankings and ITC are unchanged."]
    if validation.get("pointing_by_layer"):
        lines += ["", "Pointing accuracy (spec: the map's highest cell lies in the object's box grown by one "
                      "patch) by cross-attention layer, mean over heads:", ""]
        lines += [f"- layer {k}: {v:.2%}" for k, v in validation["pointing_by_layer"].items()]
        lines += ["", f"Default layer for maps (chosen on a separate 300-scene selection set): "
                      f"`{validation.get('default_layer')}`."]
    if heldout:
        lines += ["", f"## Measured on {heldout.get('count', '?')} held-out scenes from an independent renderer "
                      "(`bench/heldout_world.py`: other code, other sampling, other drawing)", "", *_table(heldout)]
    lines += ["", "Measure again:", "",
              f"    mmstudio eval --task {Task(task).value} --model builtin:{name} --data DIR",
              "", "with DIR from `mmstudio world generate --out DIR --count 1000 --seed 2000`."]
    if extra:
        lines += ["", extra]
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

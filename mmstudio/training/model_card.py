"""Model cards: what a built-in model is, how it was made, and what it measured."""

from __future__ import annotations

import json
from pathlib import Path

from mmstudio.models.base import Task
from mmstudio.models.in_domain import NOTE
from mmstudio.search import RERANK
from mmstudio.training.checkpoints import read_run_record
from mmstudio.training.evaluate import LAYER_SCENES

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
    "search_map_reranked": f"the same, as search ranks: ITC's best {RERANK} re-ranked by the ITM head",
    "accuracy_v1_kinds": "VQA accuracy (the spec's question kinds, absent objects left out)",
}


def earlier_stage(record: dict) -> dict | None:
    """{"steps", "learning_rate"} of the stage this run continued, where it started from a finished run of the
    same task (the recipe's second retrieval stage); kept in the record, so the card says it once that
    run's folder is gone."""
    config = record.get("config") or {}
    earlier = read_run_record(Path(config["base"])) if config.get("base") else {}
    if not earlier.get("finished") or (earlier.get("config") or {}).get("task") != config.get("task"):
        return None
    return {"steps": earlier.get("steps"), "learning_rate": earlier["config"].get("learning_rate")}


def _steps(record: dict) -> str:
    here = f"{record.get('steps', '?')} steps"
    earlier = record.get("earlier_stage")
    if not earlier:
        return here
    return (f"{earlier.get('steps', '?')} steps at learning rate {earlier.get('learning_rate')}, "
            f"then {here} at {(record.get('config') or {}).get('learning_rate')}")


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
    settings = record.get("config") or {}
    rows = settings.get("rows")
    subset = f" on the first {rows:,} of those scenes" if rows else ""
    kept = settings.get("vision_trainable_layers")
    if kept is not None:  # the rest of the tower is the base model's, as it was
        subset += f", only the top {kept} of the vision tower's layers trained" if kept else ", vision tower kept"
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
        f"Training of this model: {_steps(record)}{subset}; the whole recipe's times are in "
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
                      f"negatives and near misses on the {c.get('scenes', 300):,} selection "
                      f"scenes ({c['selection_accuracy_before']:.2%} before, {c['selection_accuracy_after']:.2%} after "
                      "on them); rankings and ITC are unchanged."]
    if validation.get("pointing_by_layer"):
        lines += ["", "Pointing accuracy (spec: the map's highest cell lies in the object's box grown by one "
                      "patch) by cross-attention layer, mean over heads:", ""]
        lines += [f"- layer {k}: {v:.2%}" for k, v in validation["pointing_by_layer"].items()]
        lines += ["", f"Default layer for maps (chosen on {LAYER_SCENES} separate selection scenes): "
                      f"`{validation.get('default_layer')}`."]
    if heldout:
        lines += ["", f"## Measured on {heldout.get('count', '?')} held-out scenes from an independent renderer "
                      "(`bench/heldout_world.py`: other code, other sampling, other drawing)", "", *_table(heldout)]
    lines += ["", "Measure again:", "",
              f"    mmstudio eval --task {Task(task).value} --model builtin:{name} --data DIR",
              "", "with DIR from `mmstudio world generate --out DIR --count 1000 --seed 2000`."]
    if extra:
        lines += ["", extra]
    lines += in_domain_section(folder)
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


IN_DOMAIN_HEADING = "## Out of the world"
SET_NAMES = {"valid": "fresh validation scenes (seed 2000)",
             "heldout": "independent renderer (heldout_world.py, seed 77)"}  # bench/out_of_world.py's names


def in_domain_section(folder: Path) -> list[str]:
    """The card's last section, from the folder's in-domain.json: what `in_domain` means and what it measured."""
    try:
        note = json.loads((Path(folder) / NOTE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    lines = ["", IN_DOMAIN_HEADING, "",
             "Every result of this model carries `in_domain` (the CLI's `--json` too), the estimated share of Shapes "
             "World scenes whose vision features (CLS token, patch tokens' mean and spread) lie at least as far "
             "from the training scenes' as the picture's: a Mahalanobis distance, turned into a conformal p-value on "
             f"{note.get('calibration_scenes', '?'):,} separate in-domain calibration scenes. Below "
             f"{note.get('flag_below')} a picture is flagged as out of the world this model knows (the app shows a "
             "banner, the CLI a warning); by construction that flags "
             f"{note.get('flag_below', 0):.1%} of in-domain scenes. Fitted on in-domain scenes only "
             f"({note.get('fit_scenes', '?'):,}, {note.get('wide_share', 0):.0%} of them drawn over the spec's whole "
             "rendering range); `in-domain.safetensors` holds it, `in-domain.json` says what it means."]
    measured = note.get("measured") or {}
    recipe = note.get("flagged_in_domain") or {}
    scenes = {**{SET_NAMES.get(k, k): recipe[k] for k in sorted(recipe, key=lambda k: k != "valid")},
              **(measured.get("in_domain") or {})}
    for title, shares in (("Shapes World scenes (target: at most 2 % flagged)", scenes),
                          ("Pictures that are not Shapes World scenes (target: at least 95 % flagged)",
                           measured.get("out_of_world") or {})):
        if shares:
            lines += ["", f"| {title} | flagged |", "|---|---|", *(f"| {k} | {v:.1%} |" for k, v in shares.items())]
    if measured.get("command"):
        lines += ["", f"Out-of-world pictures and spec corners measured {measured.get('date', '')} with:", "",
                  f"    {measured['command']}"]
    lines += ["", "After retraining, `mmstudio.training.in_domain_fit.fit_in_domain(folder)` refits it (the recipe "
                  f"does, {note.get('seconds', '?')} s for this model here); a check fitted on other weights is "
                  "ignored."]
    return lines


def refresh_in_domain_section(folder: Path) -> None:
    """Rewrite the card's out-of-the-world section (its last) from in-domain.json, leaving the rest as it is."""
    path = Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8")
    head = text.split("\n" + IN_DOMAIN_HEADING + "\n", 1)[0].rstrip("\n")
    path.write_text("\n".join([head, *in_domain_section(folder)]) + "\n", encoding="utf-8")

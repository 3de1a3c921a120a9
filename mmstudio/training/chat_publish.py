"""Publishing the built-in chat model: the attention layer that points best (chosen on the selection
scenes), the figures on the validation and held-out scenes, and its model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from mmstudio.engine import Engine
from mmstudio.models.base import Task
from mmstudio.storage import write_json_atomic
from mmstudio.training.checkpoints import RUN_RECORD, publish_half
from mmstudio.training.evaluate import LAYER_SCENES, evaluate_adapter, pick_default_layer
from mmstudio.training.in_domain_fit import CALIBRATION_SCENES, FIT_SCENES, fit_in_domain
from mmstudio.training.model_card import NAMES, in_domain_section

Emit = Callable[[dict], None]
FOLDER = "chat"


def finish_chat(trained: Path, target: Path, data: dict, emit: Emit, *, heldout: Path | None,
                recipe_command: str, in_domain_scenes: tuple[int, int] = (FIT_SCENES, CALIBRATION_SCENES)) -> dict:
    """Copy the trained model into `target` (fp16 weights), choose its layer, fit its in-domain check,
    measure it, write its card."""
    publish_half(trained, target)
    adapter = Engine().adapter(Task.CAPTION, str(target))
    selection = evaluate_adapter(adapter, data["select"], limit=LAYER_SCENES, attention=True, task=Task.CAPTION)
    layer = pick_default_layer(selection)
    chosen = layer if layer == "mean" else int(layer)
    emit({"event": "layer-choice", "task": "chat", "pointing_by_layer": selection.pointing_by_layer,
          "chosen": layer})
    record = json.loads((target / RUN_RECORD).read_text()) if (target / RUN_RECORD).is_file() else {}
    # One layer for the words of captions and of answers: both are the same model's replies.
    record["attention"] = {"caption_layer": chosen, "vqa_layer": chosen}
    write_json_atomic(target / RUN_RECORD, record)
    fit_in_domain(target, fit_scenes=in_domain_scenes[0], calibration_scenes=in_domain_scenes[1],
                  measure={"valid": data["valid"], **({"heldout": heldout} if heldout else {})}, emit=emit)
    adapter = Engine().adapter(Task.CAPTION, str(target))
    sets = {"validation": data["valid"], **({"heldout": heldout} if heldout else {})}
    for name, folder in sets.items():
        for task in (Task.CAPTION, Task.VQA):
            report = evaluate_adapter(adapter, folder, attention=task == Task.CAPTION, task=task)
            emit({"event": "measured", "task": f"chat {task.value}", "set": name, **report.as_dict()})
            record.setdefault(name, {})[task.value] = report.as_dict()
    record["parameters"] = adapter.info.parameters
    write_json_atomic(target / RUN_RECORD, record)
    write_chat_card(target, record, recipe_command=recipe_command)
    return {k: record[k] for k in sets}


_ORDER = {name: i for i, name in enumerate(NAMES)}


def _table(reports: dict) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    for task in ("caption", "vqa"):
        report = reports.get(task, {})
        metrics = report.get("metrics", {})  # in the cards' order, whatever order the record keeps
        for key, value in sorted(metrics.items(), key=lambda item: _ORDER.get(item[0], len(_ORDER))):
            if key.startswith("accuracy_") and key != "accuracy_v1_kinds":
                continue
            lines.append(f"| {NAMES.get(key, key)} | {value:.2%} |")
        for kind, value in sorted(report.get("per_kind", {}).items()):
            lines.append(f"| VQA accuracy: {kind} | {value:.2%} |")
    return lines


def _scenes(rows: int | None) -> str:
    return f"the first {rows:,} training scenes" if rows else "all the training scenes"


def write_chat_card(folder: Path, record: dict, *, recipe_command: str) -> Path:
    config = json.loads((folder / "config.json").read_text())
    vision, text = config["vision_config"], config["text_config"]
    side = vision["image_size"] // vision["patch_size"]
    training = record.get("config", {})
    caption = record.get("validation", {}).get("caption", {})
    lines = [
        "# mmstudio built-in model: chat",
        "",
        "Talks about a Shapes World scene: describes it when asked \"Describe this image.\" and answers the "
        "world's questions, turn after turn. A `LlavaForConditionalGeneration` checkpoint in the Hugging Face "
        "format (safetensors, a chat template in the processor), so `AutoProcessor.from_pretrained(dir)` and "
        "`AutoModelForImageTextToText.from_pretrained(dir)` load it without mmstudio. It is the built-in "
        "example of the image-text-to-text family: each word it writes has its attention on the picture.",
        "",
        "## Architecture",
        f"- vision tower (CLIP layout): {vision['image_size']} px input, {vision['patch_size']} px patches "
        f"({side}x{side} grid, one image token each), {vision['num_hidden_layers']} layers, hidden "
        f"{vision['hidden_size']}",
        f"- projector: two linear layers with GELU, {vision['hidden_size']} to {text['hidden_size']}",
        f"- language model (Llama): {text['num_hidden_layers']} layers, hidden {text['hidden_size']}, "
        f"{text['num_attention_heads']} heads, word-level vocabulary of {text['vocab_size']} tokens",
        f"- {record.get('parameters', 0) / 1e6:.2f}M parameters",
        "",
        "## Data and recipe",
        "Pre-training then fine-tuning, as LLaVA does. The vision tower is the built-in caption model's ViT, "
        "moved into CLIP's layout and taught for "
        f"{training.get('distill_steps', '?')} steps to give that ViT's features (CLIP has a layer norm "
        "before its first layer that BLIP has not). The projector and the language model learn from scratch, "
        f"with the tower, for {training.get('steps', '?')} steps of {training.get('batch_size', '?')} "
        f"conversations on {_scenes(training.get('rows'))} (seed 1): each "
        f"conversation up to {training.get('turns', '?')} turns, the caption as the reply to "
        "\"Describe this image.\" and the scene's questions with their one-word answers, the loss on the "
        "replies alone. The stage is part of the recipe:",
        "",
        f"    {recipe_command}",
        "",
        f"Training took {record.get('seconds', 0) / 60:.1f} min on the 2-core development machine.",
        "",
        "## Measured on 1000 fresh validation scenes (seed 2000, never used in training)",
        "",
        *_table(record.get("validation", {})),
        "",
        "Pointing accuracy of the caption's naming words (spec: the map's highest cell lies in the object's box "
        "grown by one patch), by language-model layer, mean over heads; the map of a word is the attention of "
        "the position that wrote it onto the image's tokens:",
        "",
        *[f"- layer {k}: {v:.2%}" for k, v in caption.get("pointing_by_layer", {}).items()],
        "",
        f"Default layer for maps (chosen on {LAYER_SCENES} separate selection scenes): "
        f"`{record.get('attention', {}).get('caption_layer', 'mean')}`.",
    ]
    if "heldout" in record:
        lines += ["", "## Measured on 1000 held-out scenes from an independent renderer (`bench/heldout_world.py`)",
                  "", *_table(record["heldout"])]
    lines += ["", "Measure again:", "",
              "    mmstudio eval --task caption --model builtin:chat --data DIR",
              "    mmstudio eval --task vqa --model builtin:chat --data DIR", "",
              "with DIR from `mmstudio world generate --out DIR --count 1000 --seed 2000`.", "",
              "## Limits",
              "It knows the Shapes World words alone (`vocab.txt` of the tokenizer: the shapes, colors, sizes "
              "and question forms); any other word reaches it as `<unk>`. On a picture from outside Shapes World "
              "it still writes a Shapes World caption; its in-domain check (below) flags such pictures. "
              f"It trained on conversations of up to {training.get('turns', '?')} turns: in a longer one, "
              "mmstudio gives it the latest turns alone (`read_turn_limit`)."]
    lines += in_domain_section(folder)
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

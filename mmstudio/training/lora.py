"""LoRA fine-tuning (PEFT) of BLIP: low-rank adapters on the attention projections.

Checkpoints hold the merged model (any app or script loads it as a plain BLIP
checkpoint) and, beside it, the adapter weights alone, which is what a resumed
run continues from.
"""

from __future__ import annotations

import copy
from pathlib import Path

from mmstudio.errors import MMStudioError
from mmstudio.models.base import Task

ADAPTER_FILE = "lora_adapter.safetensors"
# BLIP names: text attention "query"/"key"/"value"; the ViT's fused "qkv" and its "projection".
TARGETS = ["query", "value", "qkv"]
# Heads that a task needs trained in full (they are small).
FULLY_TRAINED = {Task.CAPTION: [], Task.VQA: [], Task.ITM: ["itm_head", "vision_proj", "text_proj"]}
# Tasks that write words: the rows of the words they are taught are trained too.
WRITES_WORDS = {Task.CAPTION, Task.VQA}


def apply_lora(model, task: Task, rank: int = 8, token_ids: list[int] | None = None):
    """token_ids: the vocabulary rows to train in full (PEFT trainable tokens, tied input/output rows).

    A word the base model never had to write (a new shape or color) sits at the bottom of its output
    layer; low-rank updates of the attention alone barely lift it, one trained row per word does."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise MMStudioError("LoRA needs the peft package: pip install peft") from None
    tokens = {"word_embeddings": sorted(set(token_ids))} if token_ids and Task(task) in WRITES_WORDS else None
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=TARGETS,
                        modules_to_save=FULLY_TRAINED[Task(task)] or None, trainable_token_indices=tokens)
    return get_peft_model(model, config)


def merged_copy(model):
    """A plain BLIP model with the adapters folded into its weights (the training model is untouched)."""
    return copy.deepcopy(model).merge_and_unload()


def save_adapter(model, folder: Path) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    save_file(state, str(Path(folder) / ADAPTER_FILE))


def load_adapter(model, folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(Path(folder) / ADAPTER_FILE)))

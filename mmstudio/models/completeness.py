"""Whether a loaded model got every weight its config asks for.

transformers fills weights missing from a folder with random numbers and only logs it (and mmstudio
quiets its log): a folder with none of a decoder's weights captioned garbage with exit 0. Here a
missing or surplus tensor refuses the load, unless the user allows it explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmstudio.errors import ModelLoadError

# Buffers that older checkpoints saved and transformers now rebuilds (position ids, GPT-2's causal masks):
# having them is no sign of a wrong folder.
_REBUILT = re.compile(r"(^|\.)(position_ids|masked_bias|attn\.bias|num_batches_tracked)$")
ALLOW_FLAG = "--allow-missing-weights"


def check_complete(path: Path, model, info: dict) -> None:
    """Raise ModelLoadError when `info` (from `output_loading_info=True`) shows missing or unexpected weights."""
    missing = sorted(k for k in (info.get("missing_keys") or ()) if not _tied_to_a_loaded_weight(model, k, info))
    unexpected = sorted(k for k in (info.get("unexpected_keys") or ()) if not _REBUILT.search(k))
    if not missing and not unexpected:
        return
    found = []
    if missing:
        found.append(f"{len(missing)} weight tensor(s) missing ({few(missing)})")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected ({few(unexpected)})")
    raise ModelLoadError(
        f"{path}: the weights do not match the model config.json describes: {'; '.join(found)}. The folder is "
        "incomplete, or its config.json belongs to another model: download or save it again, or load it anyway "
        f"with {ALLOW_FLAG} (the missing parts stay random).")


def few(names: list[str], count: int = 4) -> str:
    shown = ", ".join(names[:count])
    return shown + (f", ... {len(names) - count} more" if len(names) > count else "")


def _tied_to_a_loaded_weight(model, name: str, info: dict) -> bool:
    """A weight that shares its storage with one the folder did hold (an output layer tied to the embeddings).

    transformers 5 leaves such weights out of `missing_keys`; 4.x may list them.
    """
    try:
        target = model.get_parameter(name)
    except (AttributeError, TypeError):
        return False
    missing = set(info.get("missing_keys") or ())
    return any(other != name and other not in missing and param.data_ptr() == target.data_ptr()
               for other, param in model.named_parameters(remove_duplicate=False))

"""Attention hints: the layers whose maps point best, measured by the project's trainer and recipe and kept in
a model folder's mmstudio.json (`"attention"`). Only checkpoints we trained carry them."""

from __future__ import annotations

import logging
from pathlib import Path

from mmstudio.models.loading import read_json_capped

HINTS_FILE = "mmstudio.json"
MAX_HINTS_BYTES = 4 * 2**20  # the trainer's record with its failure samples is tens of kB
# hint -> whether "mean" (every layer averaged) is an allowed value
HINT_KEYS = {"caption_layer": True, "vqa_layer": True, "itm_gradcam_layer": False}
log = logging.getLogger(__name__)


def _record(path) -> dict:
    """A folder's mmstudio.json as an object ({} when absent; a bad one is ignored, with a note)."""
    file = Path(path) / HINTS_FILE
    if not file.is_file():
        return {}
    try:
        record = read_json_capped(file, max_bytes=MAX_HINTS_BYTES)
    except (OSError, ValueError) as exc:  # ValueError: also bad JSON, bad UTF-8, too large or too deep
        log.warning("%s: ignored (%s); the model loads without its attention hints", file, exc)
        return {}
    return record if isinstance(record, dict) else {}


def read_hints(path) -> dict:
    """The "attention" hints of a folder's mmstudio.json. The file is optional: a bad one is ignored, with a note."""
    hints = _record(path).get("attention", {})
    if not isinstance(hints, dict):
        log.warning("%s: ignored (\"attention\" is not an object of hints)", Path(path) / HINTS_FILE)
        return {}
    return hints


def read_turn_limit(path) -> int | None:
    """The most turns a conversation held when the project trained this chat model (its mmstudio.json), or None:
    a model we did not train holds what its own context allows."""
    record = _record(path)
    turns = record.get("config", {}).get("turns") if record.get("kind") == "chat" else None
    return turns if isinstance(turns, int) and not isinstance(turns, bool) and turns > 0 else None


def valid_hints(hints: dict, layers: int, path) -> dict:
    """The hints that name a layer this model has (or "mean" where that is allowed); others noted and dropped."""
    kept = {}
    for key, value in hints.items():
        may_be_mean = HINT_KEYS.get(key)
        if may_be_mean is None:
            log.warning("%s: unknown attention hint %r ignored", Path(path) / HINTS_FILE, key)
        elif (may_be_mean and value == "mean") or (
                isinstance(value, int) and not isinstance(value, bool) and 0 <= value < layers):
            kept[key] = value
        else:
            log.warning("%s: attention hint %s=%.40r ignored: the text model has layers 0 to %d%s",
                        Path(path) / HINTS_FILE, key, value, layers - 1, ' (or "mean")' if may_be_mean else "")
    return kept

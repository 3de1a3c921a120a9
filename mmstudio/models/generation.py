"""Generation settings: what the user chose, over what the checkpoint's author chose, over mmstudio's defaults.

A checkpoint's `generation_config.json` is its author's default (a length, beams, a repetition rule), so
every setting the user leaves unset (None) is the checkpoint's, as with plain
`model.generate()`; mmstudio adds only a length limit where the checkpoint names none (transformers' own
fallback, 20 tokens in all, cuts longer captions short). `generation_config` builds the GenerationConfig that
a family's `generate` call takes; `used` says what it was, for `--json` results and the app.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from typing import Any

from mmstudio.errors import SettingsError

DEFAULT_MAX_NEW_TOKENS = 40
# Passed to generate() as they are; `seed` and `prompt` are mmstudio's.
GENERATE_FIELDS = ("max_new_tokens", "min_new_tokens", "num_beams", "repetition_penalty", "no_repeat_ngram_size",
                   "do_sample", "temperature", "top_p", "top_k")
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
# The checkpoint settings that count as naming a length, as transformers reads them.
_LENGTH_FIELDS = ("max_new_tokens", "max_length")


@dataclass(frozen=True)
class GenerationOptions:
    """None: the checkpoint's own setting (its generation_config), else transformers' or mmstudio's default."""

    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    num_beams: int | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None  # sampling: the same seed, the same text
    prompt: str | None = None  # captions: the text they start with (BLIP's "a picture of"); VQA ignores it

    def validate(self) -> None:
        """Raise SettingsError naming the first setting out of range (the app and JSON build these directly)."""
        for name, check in _CHECKS:
            value = getattr(self, name)
            if value is not None:
                problem = check(value)
                if problem:
                    raise SettingsError(name, problem)
        if self.max_new_tokens is not None and self.min_new_tokens is not None and \
                self.min_new_tokens > self.max_new_tokens:
            raise SettingsError("min_new_tokens", f"must not exceed max_new_tokens ({self.max_new_tokens}), "
                                                  f"got {self.min_new_tokens}")

    def chosen(self) -> dict[str, Any]:
        """The settings the user set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationOptions":
        """Options from `chosen()`'s dict (settings the app saved); unknown names are dropped, values checked."""
        known = {f.name for f in fields(cls)}
        options = cls(**{k: v for k, v in data.items() if k in known})
        options.validate()
        return options


def _int_at_least(low: int):
    def check(value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"must be a whole number of at least {low}, got {value!r}"
        return None
    return check


def _positive_float(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return f"must be a number above 0, got {value!r}"
    return None


def _fraction(value) -> str | None:
    if _positive_float(value) or value > 1:
        return f"must be above 0 and at most 1, got {value!r}"
    return None


def _boolean(value) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _prompt(value) -> str | None:
    if not isinstance(value, str) or any(ord(c) < 32 for c in value):
        return f"must be one line of text, got {value!r}"
    return None


_CHECKS = (
    ("max_new_tokens", _int_at_least(1)), ("min_new_tokens", _int_at_least(0)), ("num_beams", _int_at_least(1)),
    ("repetition_penalty", _positive_float), ("no_repeat_ngram_size", _int_at_least(0)), ("do_sample", _boolean),
    ("temperature", _positive_float), ("top_p", _fraction), ("top_k", _int_at_least(0)), ("seed", _int_at_least(0)),
    ("prompt", _prompt),
)


def generation_config(options: GenerationOptions, own):
    """The GenerationConfig to generate with: a copy of the checkpoint's (`own`) with the user's settings on it."""
    config = copy.deepcopy(own)
    said = own.to_diff_dict()
    if options.max_new_tokens is None and not any(name in said for name in _LENGTH_FIELDS):
        config.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    for name in GENERATE_FIELDS:
        value = getattr(options, name)
        if value is not None:
            setattr(config, name, value)
    return config


def used(config, options: GenerationOptions) -> dict[str, Any]:
    """What a generation ran with: the length, the search, and the sampling settings where it sampled.

    A setting neither the user nor the checkpoint gave is transformers' own default, as generate() fills it.
    """
    config = copy.deepcopy(config)
    defaults = getattr(type(config), "_get_default_generation_params", dict)()
    config.update(**defaults, defaults_only=True)
    record: dict[str, Any] = {}
    for name in GENERATE_FIELDS:
        if name in SAMPLING_FIELDS and not config.do_sample:
            continue
        record[name] = getattr(config, name)
    if record.get("max_new_tokens") is None:
        record["max_length"] = config.max_length  # a checkpoint that limits the whole sequence instead
    if record.get("min_new_tokens") is None:
        record.pop("min_new_tokens")
    if config.do_sample:
        record["seed"] = options.seed
    if options.prompt:
        record["prompt"] = options.prompt
    return record


def seeded(torch, options: GenerationOptions, config) -> None:
    """Seed torch's generator before a sampled generation with a seed, as a plain `manual_seed` call would."""
    if options.seed is not None and config.do_sample:
        torch.manual_seed(options.seed)

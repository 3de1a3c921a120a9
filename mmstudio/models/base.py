"""The adapter protocol every model family implements, and the typed results.

A model family (BLIP, ViT-GPT2, ...) lives in one file with one adapter class.
Results carry numpy arrays only, so nothing above this layer touches torch.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from mmstudio.attention import AttentionStack
from mmstudio.models.generation import GenerationOptions  # noqa: F401 - part of the protocol


class Task(str, enum.Enum):
    CAPTION = "caption"
    VQA = "vqa"
    ITM = "itm"


DEVICE_ENV, DTYPE_ENV, THREADS_ENV = "MMSTUDIO_DEVICE", "MMSTUDIO_DTYPE", "MMSTUDIO_THREADS"


def _env_threads() -> int:
    """$MMSTUDIO_THREADS as a count (0: unset, or not a count: the CLI and the app refuse such a value at start)."""
    text = os.environ.get(THREADS_ENV, "").strip()
    return int(text) if text.isdigit() else 0


@dataclass(frozen=True)
class LoadOptions:
    # The environment sets the defaults, so a whole run (the CLI, or the test suite on a GPU) can change device.
    device: str = field(default_factory=lambda: os.environ.get(DEVICE_ENV) or "auto")  # auto|cpu|cuda|cuda:N|mps
    dtype: str = field(default_factory=lambda: os.environ.get(DTYPE_ENV) or "fp32")  # fp32 | fp16 | bf16
    allow_pickle: bool = False  # .bin weights run pickle code: only when the user says so
    # Weights missing from (or surplus to) the folder refuse the load: such a model runs, on random numbers.
    strict: bool = True
    # CPU threads for torch in the thread that runs the models; 0: the machine's cores (models/threads.py).
    # Not part of what a loaded model is: changing it reloads nothing.
    threads: int = field(default_factory=_env_threads)

    @classmethod
    def chosen(cls, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False,
               allow_missing_weights: bool = False, threads: int | None = None) -> "LoadOptions":
        """Options from command-line flags, where an unset flag (None) keeps the default."""
        given = {k: v for k, v in (("device", device), ("dtype", dtype), ("threads", threads)) if v}
        return cls(**given, allow_pickle=allow_pickle, strict=not allow_missing_weights)

    def model_key(self) -> "LoadOptions":
        """What makes two loads of one model differ (threads do not)."""
        return replace(self, threads=0)


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what the user asked for: a folder, a hub id or "builtin:caption"
    path: Path  # the resolved local folder
    family: str
    architecture: str
    tasks: frozenset[Task]
    device: str
    dtype: str
    grid: tuple[int, int]
    image_size: int
    parameters: int
    generates: bool = True  # writes its text with generate(); False: picks answers from a list (ViLT), or matches


@dataclass(frozen=True, eq=False)
class CaptionResult:
    caption: str  # with the prompt it was asked to start with, as the model's tokenizer decodes it
    tokens: tuple[str, ...]  # the generated words only: a prompt's were given, not looked for
    attention: AttentionStack | None = None  # one map per generated token
    in_domain: float | None = None  # see IN_DOMAIN below
    prompt: str = ""  # the start it was given, as the tokenizer decodes it: the caption begins with it


@dataclass(frozen=True, eq=False)
class AnswerResult:
    question: str
    answer: str
    question_tokens: tuple[str, ...] = ()
    question_attention: AttentionStack | None = None  # one map per question token
    answer_attention: AttentionStack | None = None  # one map: the answer's evidence on the image
    # A model that writes its answer word by word (a chat model): each word, and each word's own map.
    answer_tokens: tuple[str, ...] = ()
    answer_token_attention: AttentionStack | None = None
    # Words the tokenizer does not know (models/words.py). With any, nothing is generated: the answer is "".
    unknown_words: tuple[str, ...] = ()
    in_domain: float | None = None  # see IN_DOMAIN below
    # Whether the question has a form the model was trained on (models/words.familiar_question); False: the
    # answer may be a guess. None: the model does not say (a hub model), or it did not read the question.
    familiar: bool | None = None

    @property
    def understood(self) -> bool:
        """Whether the model read every word of the question, so that `answer` is its answer and not empty."""
        return not self.unknown_words


@dataclass(frozen=True, eq=False)
class MatchResult:
    text: str
    itm: float  # probability that the text matches the image: the ITM head's, or for a family
    #             without one (CLIP) the zero-shot probability below
    itc: float  # cosine similarity of the projected image and text embeddings (ITC)
    attention: AttentionStack | None = None  # one Grad-CAM map for the whole text
    token_attention: AttentionStack | None = None  # one Grad-CAM map per text token
    # Zero-shot label probability: softmax over the texts of one call of their scaled ITC similarities.
    label_probability: float | None = None
    unknown_words: tuple[str, ...] = ()  # words the tokenizer does not know: the scores are of the text without them
    in_domain: float | None = None  # see IN_DOMAIN below


# IN_DOMAIN: how likely the image belongs to the world the model was trained on (mmstudio.models.in_domain;
# flagged below in_domain.FLAG_BELOW). Only models whose folder ships the check carry it (the built-in ones);
# for every other model it is None, and nothing is ever flagged.


@dataclass(frozen=True)
class KnownWords:
    """What a small word-level vocabulary holds, by kind, with texts of the forms the model was trained on."""

    shapes: tuple[str, ...]
    colors: tuple[str, ...]
    sizes: tuple[str, ...]
    # The world's extra concepts (hexagon, pink): in the vocabulary of every model the trainer builds, yet
    # never in the scenes the built-in models learned from; a model knows them once fine-tuned on them.
    extra: tuple[str, ...]
    other: tuple[str, ...]  # words of none of the kinds above and of no Shapes World text (a user's own data)
    examples: tuple[str, ...]  # one text per trained form, in the model's own words
    MOST_OTHER: ClassVar[int] = 40  # other words listed; a user's own data may bring hundreds

    def text(self) -> str:
        """One line: "shapes: circle, ...; colors: ...; sizes: ...; questions like “...”, “...”"."""
        parts = [f"{kind}: {', '.join(words)}" for kind, words in
                 (("shapes", self.shapes), ("colors", self.colors), ("sizes", self.sizes)) if words]
        if self.extra:
            parts.append(f"{' and '.join(self.extra)} only after fine-tuning on them")
        if self.other:
            more = len(self.other) - self.MOST_OTHER
            parts.append(f"{'other ' if parts else ''}words: {', '.join(self.other[:self.MOST_OTHER])}"
                         + (f" and {more} more" if more > 0 else ""))
        if self.examples:
            kind = "questions" if self.examples[0].endswith("?") else "texts"
            parts.append(f"{kind} like " + ", ".join(f"“{e}”" for e in self.examples))
        return "; ".join(parts)


CancelCheck = Callable[[], None]  # raises CancelledError when the user cancelled


def never_cancelled() -> None:
    return None


class ModelAdapter(Protocol):
    """What the engine needs of a loaded model. Tasks a family lacks raise UnsupportedTaskError."""

    family: ClassVar[str]
    info: ModelInfo

    def caption(
        self,
        images: Sequence[Image.Image],
        *,
        attention: bool = False,
        generation: GenerationOptions = ...,
        cancel: CancelCheck = ...,
    ) -> list[CaptionResult]: ...

    def answer(
        self,
        image: Image.Image,
        questions: Sequence[str],
        *,
        attention: bool = False,
        generation: GenerationOptions = ...,
    ) -> list[AnswerResult]: ...

    def match(self, image: Image.Image, texts: Sequence[str], *, attention: bool = False) -> list[MatchResult]: ...

    def unknown_words(self, texts: Sequence[str]) -> list[tuple[str, ...]]: ...  # per text (models/words.py)

    def generation_used(self, generation: GenerationOptions) -> dict: ...  # the settings it generates with

    @property
    def known_words(self) -> KnownWords | None: ...  # what a small built-in vocabulary knows, else None

    def close(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """A model that embeds images and texts into one space (BLIP retrieval, CLIP): what search needs."""

    info: ModelInfo

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray: ...  # (B, P), unit length

    def text_features(self, texts: Sequence[str]) -> np.ndarray: ...  # (T, P), unit length


@runtime_checkable
class Reranker(Protocol):
    """An embedder with an image-text matching head (BLIP retrieval): search re-ranks its best hits with it.

    ITC compares one vector per image with one per text; ITM reads the text against every patch, so it
    tells "a small red circle" in a scene of three objects where one vector cannot.
    """

    def match_scores(self, images: Sequence[Image.Image], text: str) -> np.ndarray: ...  # (B,) ITM probability

    # The same, with each image's in_domain (None: the model has no check) from the same vision pass.
    def match_and_domain(self, images: Sequence[Image.Image], text: str
                         ) -> tuple[np.ndarray, list[float | None]]: ...


@dataclass
class AdapterFactory:
    """How a registry entry recognises its checkpoints and builds an adapter for them."""

    family: str
    accepts: Callable[[dict], bool]
    load: Callable[..., ModelAdapter]
    tasks_of: Callable[[dict], frozenset[Task]]
    notes: str = ""
    extra: dict = field(default_factory=dict)

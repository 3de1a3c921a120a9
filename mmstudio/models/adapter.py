"""What every family's adapter shares, in one place; each family file writes only what differs.

`ModelAdapter` (base.py) stays the engine's contract; `AdapterBase` is one way to meet it. It
keeps the bookkeeping all four families repeated: the torch handle, the parts, the device and
dtype of the weights, a vision cache and the cached vision pass, `hints`, the `ModelInfo`,
`load` through `load_parts`, `close`, `pixel_values`, the in-domain check of a folder that ships one
(`in_domain`, for families whose `world_checkable`), and the UnsupportedTaskError of a task the
family does not do (a family overrides `caption`, `answer_questions`, `score_texts` for the tasks
it does). `answer` and `match` are the base's: they find the words the tokenizer does not know
(models/words.py) and put them on the results, and a question with any gets no answer, not a guess.

Class attributes and hooks (override what differs; the defaults fit most families):
  `family`, `TASKS`               the registry's family name; the tasks of every checkpoint
  `kind`, `does`                  how the "does X, not Y" message names the model and its tasks
  `loads`                         the transformers class (by name) that loads a folder, or the
                                  family's `Architectures` where that follows the config
  `load_arguments`                extra `from_pretrained` arguments (eager attention for maps)
  `load_processing(path)`         what the constructor takes after the model
  `tasks()`, `architecture()`, `image_geometry()`   what `ModelInfo` says
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from PIL import Image

from mmstudio.errors import ModelLoadError, UnsupportedTaskError
from mmstudio.imaging import content_key
from mmstudio.models.base import (
    AnswerResult,
    CaptionResult,
    KnownWords,
    LoadOptions,
    MatchResult,
    ModelInfo,
    Task,
)
from mmstudio.models.common import Architectures, load_parts, tokenizer_and_image_processor
from mmstudio.models.generation import GenerationOptions, generation_config, used
from mmstudio.models.in_domain import InDomainCheck
from mmstudio.models.loading import ResolvedModel
from mmstudio.models.vision_cache import VisionCache
from mmstudio.models.words import familiar_question, known_words, unknown_words


def count_parameters(model) -> int:
    """Weights of the model, int8 Linear layers included (quantized, they are packed buffers, not parameters)."""
    packed = sum(module.weight().numel() + (module.bias().numel() if module.bias() is not None else 0)
                 for module in model.modules() if type(module).__name__ == "GradientLinear")
    return sum(p.numel() for p in model.parameters()) + packed


class AdapterBase:
    family: ClassVar[str]
    TASKS: ClassVar[frozenset[Task]] = frozenset()  # what every checkpoint of the family does
    kind: ClassVar[str] = "a model"  # "{name} is {kind}: it does ..., not ..."
    loads: ClassVar[str | Architectures]
    checkpoint_kind: ClassVar[str] = ""  # "{path}: not a {checkpoint_kind} checkpoint"
    load_arguments: ClassVar[dict[str, Any]] = {}
    # Zero-shot label probabilities of each text alone (SigLIP's sigmoid), not a softmax over the texts asked.
    labels_alone: ClassVar[bool] = False
    # Images go through the vision tower together; False where each has a shape of its own (SigLIP 2 NaFlex).
    vision_batches: ClassVar[bool] = True
    # Read at load from the folder where it ships one (the built-in models): how far an image is from their
    # world. A family that can carry one gives `image_embeds` as (B, 1 + patches, D), its CLS token first.
    in_domain_check: InDomainCheck | None = None
    _world_cloud: tuple | None = None  # the check's mean and whitening as tensors, made on first use

    def __init__(self, model, tokenizer, image_processor, *, name: str, path: Path, dtype: str = "fp32",
                 cache_size: int = 64):
        import torch

        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        param = next(model.parameters())
        self.device, self.dtype = str(param.device), param.dtype
        image_size, patch_size = self.image_geometry()
        side = image_size // patch_size
        self.cache: VisionCache = VisionCache(cache_size)  # vision outputs by pixels; what is kept is the family's
        self.hints: dict = {}  # measured best layers: only our trained BLIP checkpoints carry them
        self.info = ModelInfo(
            name=name,
            path=Path(path),
            family=self.family,
            architecture=self.architecture(),
            tasks=self.tasks(),
            device=self.device,
            dtype=dtype,
            grid=(side, side),
            image_size=image_size,
            parameters=count_parameters(model),
            generates=getattr(model, "generation_config", None) is not None,
        )

    # ----------------------------------------------------------------- hooks

    def tasks(self) -> frozenset[Task]:
        return self.TASKS

    def architecture(self) -> str:
        return type(self.model).__name__

    def image_geometry(self) -> tuple[int, int]:
        """(image side, patch side) of the vision tower."""
        vision = self.model.config.vision_config
        return vision.image_size, vision.patch_size

    @property
    def does(self) -> str:
        return ", ".join(sorted(task.value for task in self.info.tasks))

    @classmethod
    def architecture_to_load(cls, config: dict) -> str | None:
        """The transformers class that loads a checkpoint of `config`, or None where it is not this family's."""
        if isinstance(cls.loads, Architectures):
            return cls.loads.of(config)
        return cls.loads  # one class for the whole family: the registry has called `accepts`

    # The constructor's arguments after the model, loaded from the folder: (tokenizer, image processor).
    load_processing = staticmethod(tokenizer_and_image_processor)

    # ------------------------------------------------------------------ load

    @classmethod
    def load(cls, resolved: ResolvedModel, options: LoadOptions, **init):
        """Load a checkpoint folder on guard (see `load_parts`); `init` goes to the constructor."""
        import transformers

        arch = cls.architecture_to_load(resolved.config)
        if arch is None:
            raise ModelLoadError(f"{resolved.path}: not a {cls.checkpoint_kind} checkpoint")
        model, *processing = load_parts(getattr(transformers, arch), resolved, options, what=arch,
                                        processing=cls.load_processing, **cls.load_arguments)
        return cls(model, *processing, name=resolved.name, path=resolved.path, dtype=options.dtype, **init)

    def clear_caches(self) -> None:
        """Forget every image seen."""
        self.cache.clear()

    def close(self) -> None:
        self.clear_caches()
        self.model = None

    def pixel_values(self, images: Sequence[Image.Image]):
        batch = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return batch.to(self.device, self.dtype)

    def cached_vision(self, images: Sequence[Image.Image], forward: Callable, keys: Sequence[str] | None = None):
        """(B, ...) `forward(pixel_values)` of the images, from the cache where the same pixels were seen.

        `forward` is the family's vision pass, one row per image; `keys`: the images' content keys,
        when the caller has them already.
        """
        torch = self._torch

        def compute(indices: list[int]):
            with torch.inference_mode():
                if not self.vision_batches:
                    return [forward(self.pixel_values([images[i]])) for i in indices]
                return list(forward(self.pixel_values([images[i] for i in indices])).split(1))

        keys = list(keys) if keys is not None else [content_key(image) for image in images]
        return torch.cat(self.cache.get_many(keys, compute))

    # ------------------------------------------------------- out of the world

    def world_checkable(self) -> bool:
        """Whether `image_embeds` gives what an in-domain check measures (a CLS token, then patches)."""
        return False

    def _world_features(self, embeds):
        patches = embeds[:, 1:].float()
        return self._torch.cat([embeds[:, 0].float(), patches.mean(dim=1), patches.std(dim=1, correction=0)], dim=-1)

    def world_features(self, embeds) -> np.ndarray:
        """(B, 3D) what the in-domain check measures: the CLS token, the mean and the spread of the patch tokens."""
        with self._torch.inference_mode():
            return self._world_features(embeds).cpu().numpy()

    def in_domain_of(self, images: Sequence[Image.Image]) -> list[float | None]:
        """Each image's in_domain, from a vision pass of its own (None for every image: no check)."""
        if self.in_domain_check is None:
            return [None] * len(images)
        return self.in_domain(self.image_embeds(images))

    def in_domain(self, embeds) -> list[float | None]:
        """Each image's in_domain (see mmstudio.models.in_domain), from the vision pass already made.

        The distance is computed in torch, on the model's device and threads: numpy's BLAS threads on top
        of torch's just after a vision pass made a batch of 64 captions up to 6 times slower on 2 cores.
        """
        check = self.in_domain_check
        if check is None:
            return [None] * len(embeds)
        torch = self._torch
        with torch.inference_mode():
            features = self._world_features(embeds)
            if self._world_cloud is None or self._world_cloud[0].device != features.device:
                self._world_cloud = tuple(torch.from_numpy(a).float().to(features.device)
                                          for a in (check.mean, check.whiten))
            mean, whiten = self._world_cloud
            distances = torch.linalg.vector_norm((features - mean) @ whiten, dim=-1)
        return [float(v) for v in check.probability(distances.double().cpu().numpy())]

    # ------------------------------------------------------------ generation

    def generation_config(self, options: GenerationOptions):
        """The GenerationConfig a generation with `options` runs with (models/generation.py)."""
        return generation_config(options, self.model.generation_config)

    def prompt_ids(self, prompt: str | None, limit: int | None = None) -> list[int]:
        """A caption prompt's tokens, without the tokenizer's special ones (at most `limit`)."""
        if not prompt or not prompt.strip():
            return []
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"][:limit]

    def generation_used(self, options: GenerationOptions) -> dict:
        """What a caption or an answer with `options` is generated with; {} for a model that does not generate."""
        if getattr(self.model, "generation_config", None) is None:
            return {}
        return used(self.generation_config(options), options)

    # ------------------------------------------------ tasks the family lacks

    def unsupported(self, task: Task) -> UnsupportedTaskError:
        return UnsupportedTaskError(f"{self.info.name} is {self.kind}: it does {self.does}, not {task.value}")

    def _require(self, task: Task) -> None:
        if task not in self.info.tasks:
            raise self.unsupported(task)

    def caption(self, images: Sequence[Image.Image], **_options) -> list[CaptionResult]:
        raise self.unsupported(Task.CAPTION)

    def answer_questions(self, image: Image.Image, questions: Sequence[str], **_options) -> list[AnswerResult]:
        raise self.unsupported(Task.VQA)

    def score_texts(self, image: Image.Image, texts: Sequence[str], **_options) -> list[MatchResult]:
        raise self.unsupported(Task.ITM)

    # ------------------------------------------------------- words it knows

    def unknown_words(self, texts: Sequence[str]) -> list[tuple[str, ...]]:
        return unknown_words(self.tokenizer, texts)

    @functools.cached_property
    def known_words(self) -> KnownWords | None:
        return known_words(self.tokenizer, self.info.path, self.info.tasks)

    def answer(self, image: Image.Image, questions: Sequence[str], **options) -> list[AnswerResult]:
        """Answers in question order. A question with a word the model does not know is not run: the model
        would answer the question without that word (often "no", or a colour), a guess that reads as an answer."""
        self._require(Task.VQA)
        unknown = self.unknown_words(questions)
        read = [question for question, words in zip(questions, unknown) if not words]
        answers = iter(self.answer_questions(image, read, **options) if read else ())
        known = self.known_words
        return [AnswerResult(question=question, answer="", unknown_words=words) if words else
                replace(next(answers), familiar=familiar_question(question, known))
                for question, words in zip(questions, unknown)]

    def match(self, image: Image.Image, texts: Sequence[str], **options) -> list[MatchResult]:
        """Scores in text order, each with the words of its text the model does not know (scored without them)."""
        self._require(Task.ITM)
        results = self.score_texts(image, texts, **options)
        return [replace(result, unknown_words=words) if words else result
                for result, words in zip(results, self.unknown_words(texts))]

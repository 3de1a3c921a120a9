"""The inference engine: the loaded models of a session and the three questions asked of them.

One engine is owned by one thread (the GUI's worker or the CLI's main loop):
models and their caches are not shared across threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Sequence, TypeVar

from PIL import Image

from mmstudio.errors import MMStudioError, SettingsError, UnsupportedTaskError
from mmstudio.models.base import (
    AnswerResult,
    CancelCheck,
    CaptionResult,
    Embedder,
    GenerationOptions,
    KnownWords,
    LoadOptions,
    MatchResult,
    ModelAdapter,
    Task,
    never_cancelled,
)
from mmstudio.models.loading import builtin_name
from mmstudio.models.registry import load_adapter
from mmstudio.models.threads import use_threads
from mmstudio.search import RERANK, Collection, EmbeddingIndex, Hit, Progress, Source

T = TypeVar("T")


@dataclass(frozen=True)
class CaptionItem(Generic[T]):
    """One input of `Engine.caption_each`: its caption, or why it has none."""

    image: T  # the input as the caller gave it (a path, an ImageRef, pixels)
    result: CaptionResult | None = None
    error: str | None = None  # this image failed (e.g. a broken file); the others still ran


class Engine:
    def __init__(self, options: LoadOptions = LoadOptions()):
        self.options = options
        self._adapters: dict[tuple[str, LoadOptions], ModelAdapter] = {}
        self._chosen: dict[Task, str] = {}
        self._indexes: dict[int, EmbeddingIndex] = {}  # by id of the adapter that embeds for it

    # ----------------------------------------------------------------- models

    def model_name(self, task: Task) -> str:
        return self._chosen.get(Task(task), builtin_name(task))

    def use(self, task: Task, name: str | os.PathLike | None, options: LoadOptions | None = None) -> ModelAdapter:
        """Load (or reuse) a model for a task. On failure the previous choice stays in place."""
        task = Task(task)
        if options is not None:
            self.options = options
        name = os.fspath(name) if name else builtin_name(task)
        adapter = self.adapter(task, name)
        self._chosen[task] = name
        return adapter

    def adapter(self, task: Task, name: str | os.PathLike | None = None) -> ModelAdapter:
        """The model for a task: `name` for this call only, else the chosen one (the choice stays)."""
        task = Task(task)
        name = os.fspath(name) if name else self.model_name(task)
        use_threads(self.options.threads)  # in the thread that runs the model: torch keeps the count per thread
        adapter = self._load(name)
        if task not in adapter.info.tasks:
            does = ", ".join(sorted(t.value for t in adapter.info.tasks)) or "nothing mmstudio runs"
            raise UnsupportedTaskError(f"{name} cannot do {task.value} (it does {does})")
        return adapter

    def _load(self, name: str) -> ModelAdapter:
        key = (name, self.options.model_key())
        if key not in self._adapters:
            self._adapters[key] = load_adapter(name, self.options)
        return self._adapters[key]

    def loaded(self) -> list[ModelAdapter]:
        return list(self._adapters.values())

    def unload_all(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()
        self._indexes.clear()

    # ------------------------------------------------------------------ tasks

    def caption(
        self,
        images: Sequence[Image.Image],
        *,
        model: str | None = None,
        attention: bool = False,
        batch_size: int = 16,
        generation: GenerationOptions = GenerationOptions(),
        cancel: CancelCheck = never_cancelled,
        progress: Progress | None = None,
    ) -> list[CaptionResult]:
        self.adapter(Task.CAPTION, model)  # an unusable model fails here, even for no images
        return [item.result for item in self.caption_each(images, model=model, attention=attention,
                                                           batch_size=batch_size, generation=generation,
                                                           cancel=cancel, progress=progress)]

    def caption_each(
        self,
        images: Sequence[T],
        *,
        load: Callable[[T], Image.Image] | None = None,
        model: str | None = None,
        attention: bool = False,
        batch_size: int = 16,
        generation: GenerationOptions = GenerationOptions(),
        cancel: CancelCheck = never_cancelled,
        progress: Progress | None = None,
        stream: Callable[[int, str], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[CaptionItem[T]]:
        """Caption batch by batch: one item per input, in input order, as soon as its batch is done.

        The one batching loop of the GUI worker, the CLI and `caption`. `load(image)` turns an input
        (a path, an ImageRef) into pixels; without it the inputs are pixels. An MMStudioError from
        `load` becomes that input's `error` and the rest of its batch still runs. `cancel()` is
        called before each batch (the model calls it between its steps too); `progress(done, total)`
        after each batch's items have been taken. A model that writes word by word (a chat model) calls
        `stream(input index, caption so far)` after each token, and ends a caption early once `stop()` is true.
        """
        generation.validate()
        size = max(1, int(batch_size))
        total = len(images)
        for start in range(0, total, size):
            cancel()
            chunk = images[start:start + size]
            pixels: list[Image.Image] = []
            errors: dict[int, str] = {}
            for i, image in enumerate(chunk):
                try:
                    pixels.append(load(image) if load is not None else image)
                except MMStudioError as exc:
                    errors[i] = str(exc)
            captioner = self._captioner(model, generation) if pixels else None
            live = {}
            if stream is not None and getattr(captioner, "streams", False):  # a chat model writes word by word
                # Its index among the pixels read is the chunk's index once the unreadable ones are skipped.
                read = [i for i in range(len(chunk)) if i not in errors]
                live = {"stream": lambda i, text, s=start, r=read: stream(s + r[i], text), "stop": stop}
            results = iter(captioner.caption(pixels, attention=attention, generation=generation, cancel=cancel,
                                             **live) if pixels else ())
            for i, image in enumerate(chunk):
                yield CaptionItem(image, error=errors[i]) if i in errors else CaptionItem(image, result=next(results))
            if progress:
                progress(start + len(chunk), total)

    def _captioner(self, model: str | None, generation: GenerationOptions) -> ModelAdapter:
        """The caption model, once it has pixels to caption, checked against the prompt it is given."""
        adapter = self.adapter(Task.CAPTION, model)
        unknown = adapter.unknown_words([generation.prompt])[0] if generation.prompt else ()
        if unknown:  # the model would start from [UNK]s: a caption of something else than was asked
            raise SettingsError("prompt", f"has words {adapter.info.name} does not know: {', '.join(unknown)}")
        return adapter

    def ask(
        self,
        image: Image.Image,
        questions: Sequence[str],
        *,
        model: str | None = None,
        attention: bool = False,
        generation: GenerationOptions = GenerationOptions(),
        stream: Callable[[str], None] | None = None,
        stop: Callable[[], bool] | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> list[AnswerResult]:
        """Answers in question order. A chat model reads `history` (earlier (question, answer) turns about the
        image) before each question, calls `stream(text so far)` after each token and ends its answer, keeping
        what it wrote, once `stop()` is true; other models answer each question alone and ignore all three."""
        generation.validate()
        adapter = self.adapter(Task.VQA, model)
        live = ({"stream": stream, "stop": stop, "history": tuple(history)} if getattr(adapter, "streams", False)
                else {})
        return adapter.answer(image, questions, attention=attention, generation=generation, **live)

    def match(
        self, image: Image.Image, texts: Sequence[str], *, model: str | None = None, attention: bool = False
    ) -> list[MatchResult]:
        return self.adapter(Task.ITM, model).match(image, texts, attention=attention)

    def unknown_words(self, task: Task, texts: Sequence[str], *, model: str | None = None) -> list[tuple[str, ...]]:
        """Per text, the words the task's model does not know (a search query's: the matching model's)."""
        return self.adapter(task, model).unknown_words(texts)

    def known_words(self, task: Task, *, model: str | None = None) -> KnownWords | None:
        """What the task's model knows, for one of our small-vocabulary models (the built-in ones); else None."""
        return self.adapter(task, model).known_words

    # ----------------------------------------------------------------- search

    def embedder(self, model: str | None = None) -> Embedder:
        """The matching model, when it can embed images and texts into one space (BLIP retrieval, CLIP)."""
        adapter = self.adapter(Task.ITM, model)
        if not isinstance(adapter, Embedder):
            raise UnsupportedTaskError(f"{adapter.info.name} ({adapter.info.family}) cannot embed images for search")
        return adapter

    def search_index(self, model: str | None = None) -> EmbeddingIndex:
        embedder = self.embedder(model)
        if id(embedder) not in self._indexes:
            self._indexes[id(embedder)] = EmbeddingIndex(embedder)
        return self._indexes[id(embedder)]

    def index(
        self,
        sources: Sequence[Source],
        *,
        model: str | None = None,
        batch_size: int = 32,
        cancel: CancelCheck = never_cancelled,
        progress: Progress | None = None,
    ) -> Collection:
        """Bring the model's index up to date with the sources (encoding only new pixels) and save it."""
        index = self.search_index(model)
        try:
            return index.collect(sources, batch_size=batch_size, cancel=cancel, progress=progress)
        finally:
            index.save()  # what was encoded before a cancel is kept

    def search_like(self, collection: Collection, image: Image.Image, *, model: str | None = None,
                    top_k: int = 10) -> list[Hit]:
        return self.search_index(model).search_like(collection, image, top_k)

    def search(self, collection: Collection, query: str, *, model: str | None = None, top_k: int = 10,
               depth: int = RERANK, cancel: CancelCheck = never_cancelled) -> list[Hit]:
        return self.search_index(model).search(collection, query, top_k, depth=depth, cancel=cancel)

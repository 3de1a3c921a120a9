"""Typed requests to the inference engine and the one function that carries them out.

The GUI's worker thread and the tests drive the engine through `execute`, so a
request means the same thing wherever it comes from. Requests name images by
path and a content key; results carry the request back so a caller can drop
stale ones (an image no longer selected).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import numpy as np
from PIL import Image

from mmstudio.embedding_map import MapLayout, cached_layout, clusters, layout_path, saved_layout
from mmstudio.engine import CaptionItem, Engine, Progress
from mmstudio.errors import CancelledError, MMStudioError
from mmstudio.imaging import load_image
from mmstudio.models.base import AnswerResult, KnownWords, LoadOptions, MatchResult, ModelInfo, Task
from mmstudio.models.generation import GenerationOptions
from mmstudio.search import RERANK, IndexReport
from mmstudio.world.dataset import true_captions

_ids = itertools.count(1)


def next_id() -> int:
    return next(_ids)


@dataclass(frozen=True)
class ImageRef:
    """An image the user opened: a file path, or pixels pasted from the clipboard."""

    key: str  # stable identity in the gallery (path, or "clipboard:N")
    path: Path | None = None
    pixels: Image.Image | None = field(default=None, compare=False, repr=False)

    def load(self) -> Image.Image:
        return self.pixels if self.pixels is not None else load_image(self.path)


@dataclass(frozen=True)
class CaptionRequest:
    images: tuple[ImageRef, ...]
    attention: bool = True
    batch_size: int = 16
    model: str | None = None  # None: the model chosen for the task
    generation: GenerationOptions = GenerationOptions()  # unset: the checkpoint's own settings
    id: int = field(default_factory=next_id)


@dataclass(frozen=True)
class AskRequest:
    image: ImageRef
    question: str
    attention: bool = True
    model: str | None = None
    generation: GenerationOptions = GenerationOptions()
    # The conversation so far about this image, (question, answer) turns: a chat model reads it, others
    # answer each question alone.
    history: tuple[tuple[str, str], ...] = ()
    id: int = field(default_factory=next_id)


@dataclass(frozen=True)
class MatchRequest:
    image: ImageRef
    texts: tuple[str, ...]
    attention: bool = True
    model: str | None = None
    id: int = field(default_factory=next_id)


@dataclass(frozen=True)
class LoadModelRequest:
    task: Task
    name: str
    options: LoadOptions = LoadOptions()
    id: int = field(default_factory=next_id)


@dataclass(frozen=True)
class SearchRequest:
    """Find the images that fit a text (or look like a picture) among `images` (indexing the ones the model has
    not embedded yet)."""

    images: tuple[ImageRef, ...]
    query: str  # "" with `like`
    top_k: int = 10
    like: ImageRef | None = None  # a picture to find others like: an image query instead of the text
    model: str | None = None  # None: the model chosen for matching
    depth: int = RERANK  # best hits re-ranked by a matching head, where the model has one (search.RERANK)
    id: int = field(default_factory=next_id)


@dataclass(frozen=True)
class MapRequest:
    """A 2-D map of `images` in the matching model's space (indexing what it lacks), and `query` placed on it."""

    images: tuple[ImageRef, ...]
    query: str = ""
    model: str | None = None
    id: int = field(default_factory=next_id)


Request = Union[CaptionRequest, AskRequest, MatchRequest, LoadModelRequest, SearchRequest, MapRequest]


@dataclass(frozen=True)
class CaptionOutcome:
    request: CaptionRequest
    items: tuple[CaptionItem[ImageRef], ...]


@dataclass(frozen=True)
class AskOutcome:
    request: AskRequest
    result: AnswerResult
    known: KnownWords | None = None  # what the model knows, when it did not understand the question or knows
    #                                  no question of its form


@dataclass(frozen=True)
class MatchOutcome:
    request: MatchRequest
    results: tuple[MatchResult, ...]
    known: KnownWords | None = None  # what the model knows, when a text has words it does not


@dataclass(frozen=True)
class ModelOutcome:
    request: LoadModelRequest
    info: ModelInfo


@dataclass(frozen=True)
class SearchHit:
    image: ImageRef
    score: float  # cosine similarity of the image and the query
    rank: int  # 1 = best
    match: float | None = None  # the matching head's probability that the query describes the image, if re-ranked
    in_domain: float | None = None  # where the re-ranking model has an in-domain check (models/in_domain.py)


@dataclass(frozen=True)
class SearchOutcome:
    request: SearchRequest
    hits: tuple[SearchHit, ...]
    report: IndexReport
    unknown_words: tuple[str, ...] = ()  # words of the query the model does not know: ranked without them
    known: KnownWords | None = None  # what the model knows, when there are such words


@dataclass(frozen=True, eq=False)
class MapOutcome:
    request: MapRequest
    images: tuple[ImageRef, ...]  # one per point, in the layout's order (unreadable ones left out)
    layout: MapLayout
    report: IndexReport
    query_xy: tuple[float, float] | None = None  # where the query lands on the plane
    similarity: np.ndarray | None = None  # (N,) cosine of each image and the query, in the full space
    unknown_words: tuple[str, ...] = ()
    vectors: np.ndarray | None = None  # (N, D) the images' embeddings: what a UMAP layout is computed from
    umap_path: Path | None = None  # where these pictures' UMAP layout is kept (beside their index)
    umap: MapLayout | None = None  # that layout, when it was computed before
    clusters: np.ndarray | None = None  # (N,) k-means group of each picture (embedding_map.clusters)
    truths: tuple[str | None, ...] = ()  # per picture, its true caption where a dataset folder names it


Outcome = Union[CaptionOutcome, AskOutcome, MatchOutcome, ModelOutcome, SearchOutcome, MapOutcome]


class CancelToken:
    """Set from any thread; checked by the work between steps."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise CancelledError("cancelled")


def execute(engine: Engine, request: Request, token: CancelToken | None = None,
            progress: Progress | None = None, stream: Callable[[int, str], None] | None = None) -> Outcome:
    """Carry out one request. Raises MMStudioError subclasses (CancelledError when cancelled). `stream(index,
    text so far)`: a caption's (index: of the image) or an answer's (index 0) text, token by token, where the
    model writes it that way (a chat model)."""
    token = token or CancelToken()
    token.check()
    if isinstance(request, LoadModelRequest):
        adapter = engine.use(request.task, request.name, request.options)
        return ModelOutcome(request, adapter.info)
    if isinstance(request, CaptionRequest):
        return _caption(engine, request, token, progress, stream)
    if isinstance(request, AskRequest):
        result = engine.ask(request.image.load(), [request.question], model=request.model,
                            attention=request.attention, generation=request.generation,
                            stream=(lambda text: stream(0, text)) if stream else None,
                            stop=lambda: token.cancelled, history=request.history)[0]
        token.check()  # stopped mid-answer: what was written has been streamed; the request ends cancelled
        return AskOutcome(request, result, _known(engine, Task.VQA, request.model,
                                                  result.unknown_words or result.familiar is False))
    if isinstance(request, MatchRequest):
        results = engine.match(request.image.load(), list(request.texts), model=request.model,
                               attention=request.attention)
        unknown = any(result.unknown_words for result in results)
        return MatchOutcome(request, tuple(results), _known(engine, Task.ITM, request.model, unknown))
    if isinstance(request, SearchRequest):
        return _search(engine, request, token, progress)
    if isinstance(request, MapRequest):
        return _map(engine, request, token, progress)
    raise TypeError(f"not a request: {request!r}")


def _caption(engine: Engine, request: CaptionRequest, token: CancelToken, progress: Progress | None,
             stream: Callable[[int, str], None] | None = None):
    items = engine.caption_each(request.images, load=ImageRef.load, model=request.model,
                                attention=request.attention, batch_size=request.batch_size, cancel=token.check,
                                progress=progress, generation=request.generation, stream=stream,
                                stop=lambda: token.cancelled)
    items = tuple(items)
    token.check()  # stopped mid-caption: what was written has been streamed; the request ends cancelled
    return CaptionOutcome(request, items)


def _search(engine: Engine, request: SearchRequest, token: CancelToken, progress: Progress | None):
    # Files are indexed by path (unchanged ones are not even read); pasted images by their pixels.
    refs = {ref.key: ref for ref in request.images}
    sources = [(ref.key, ref.pixels if ref.pixels is not None else ref.path) for ref in request.images]
    collection = engine.index(sources, model=request.model, cancel=token.check, progress=progress)
    token.check()
    if request.like is not None:
        hits = engine.search_like(collection, request.like.load(), model=request.model, top_k=request.top_k)
        return SearchOutcome(request, _search_hits(refs, hits), collection.report, (), None)
    hits = engine.search(collection, request.query, model=request.model, top_k=request.top_k, depth=request.depth,
                         cancel=token.check)
    unknown = engine.unknown_words(Task.ITM, [request.query], model=request.model)[0]
    return SearchOutcome(request, _search_hits(refs, hits), collection.report, unknown,
                         _known(engine, Task.ITM, request.model, unknown))


def _search_hits(refs: dict, hits) -> tuple[SearchHit, ...]:
    return tuple(SearchHit(refs[h.image], h.score, h.rank, h.match, h.in_domain) for h in hits)


def _map(engine: Engine, request: MapRequest, token: CancelToken, progress: Progress | None) -> MapOutcome:
    refs = {ref.key: ref for ref in request.images}
    sources = [(ref.key, ref.pixels if ref.pixels is not None else ref.path) for ref in request.images]
    collection = engine.index(sources, model=request.model, cancel=token.check, progress=progress)
    token.check()
    images = tuple(refs[name] for name in collection.names)
    if not images:
        raise MMStudioError("none of the images could be read to map")
    layout = cached_layout(collection.vectors, collection.keys, collection.cache)
    umap_path = (layout_path(collection.keys, collection.vectors.shape[1], collection.cache, "umap")
                 if collection.cache else None)
    kept = dict(vectors=collection.vectors, umap_path=umap_path, umap=saved_layout(umap_path, len(images)),
                clusters=clusters(collection.vectors), truths=tuple(true_captions([r.path for r in images])))
    if not request.query.strip():
        return MapOutcome(request, images, layout, collection.report, **kept)
    text = engine.embedder(request.model).text_features([request.query])[0]
    unknown = engine.unknown_words(Task.ITM, [request.query], model=request.model)[0]
    similarity = collection.vectors @ text
    xy = layout.place_text(text, similarity)
    return MapOutcome(request, images, layout, collection.report, (float(xy[0]), float(xy[1])), similarity,
                      tuple(unknown), **kept)


def _known(engine: Engine, task: Task, model: str | None, wanted) -> KnownWords | None:
    """What the model knows, only where a text had words it does not or a question's form is not one it learned:
    nothing to carry otherwise."""
    return engine.known_words(task, model=model) if wanted else None

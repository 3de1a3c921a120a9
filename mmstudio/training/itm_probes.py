"""What the retrieval model is measured on besides full captions: partial descriptions and one-object search.

Both come from a scene's objects, so any Shapes World dataset (and any data with objects) has them:
- decision probes: per scene, PARTIALS true partial descriptions (each in a random form: full phrases,
  no sizes, no colours) and MISSES near misses of each, drawn from a generator seeded by the scene's
  row, so every run and every model sees the same texts;
- one-object queries: every `a {size} {color} {shape}` of the vocabulary, ranked over the whole set as
  gallery search ranks (ITC embeddings, the best re-ranked by the ITM head); a scene is relevant when it
  holds such an object.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from mmstudio.search import RERANK, rerank
from mmstudio.world.descriptions import false_descriptions, partial_description, truth_table
from mmstudio.world.vocab import COLORS, SHAPES, SIZES

PARTIALS = 2
MISSES = 2
PROBE_SEED = 19

Match = Callable[[str, np.ndarray], np.ndarray]  # (text, scene indices) -> ITM probabilities


def partial_probes(objects: list[dict], row: int) -> list[tuple[str, bool]]:
    """(text, true of the scene) pairs: PARTIALS partial descriptions, each followed by its near misses."""
    rng = np.random.default_rng([PROBE_SEED, row])
    probes: list[tuple[str, bool]] = []
    for _ in range(PARTIALS):
        text = partial_description(objects, rng)
        probes.append((text, True))
        probes += [(miss, False) for miss in false_descriptions(objects, text, rng, k=MISSES)]
    return probes


def decision_texts(row: dict, index: int) -> list[tuple[str, bool]]:
    """(text, true) of an evaluation row as measured and calibrated: its caption, its hard negatives, and
    where the row has objects, its partial probes (`index`: the row's place in its set)."""
    probes = partial_probes(row["objects"], index) if row.get("objects") else []
    return [(row["caption"], True), *((n, False) for n in row.get("negatives") or []), *probes]


def one_object_queries() -> list[str]:
    return [f"a {z} {c} {s}" for s in SHAPES for c in COLORS for z in SIZES]


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Mean of the precision at the rank of each relevant item (ties broken by order)."""
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order]
    if not hits.any():
        return float("nan")
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def search_map(image_features: np.ndarray, text_features: np.ndarray, objects: list[list[dict]],
               queries: list[str], match: Match | None = None, depth: int = RERANK) -> tuple[float, dict[str, float]]:
    """(mean AP over the queries some scene answers, AP per query) of ranking the set by ITC similarity, and
    with `match(text, indices)` (the ITM probabilities of those scenes) its best `depth` re-ranked by it, as
    search does."""
    scores = text_features @ image_features.T
    truth = np.array(truth_table(objects, queries), dtype=bool).reshape(len(objects), len(queries))
    per_query = {}
    for q, text in enumerate(queries):
        relevant = truth[:, q]
        if not relevant.any():
            continue
        ranking = scores[q]
        if match is not None:
            order, _ = rerank(scores[q], functools.partial(match, text), depth)
            ranking = np.empty(len(order))
            ranking[order] = -np.arange(len(order), dtype=float)
        per_query[text] = average_precision(ranking, relevant)
    return float(np.mean(list(per_query.values()))), per_query

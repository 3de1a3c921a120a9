"""Corpus BLEU-4 (Papineni et al. 2002): clipped n-gram precision, geometric mean, brevity penalty."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """One reference per hypothesis, as Shapes World has one canonical caption."""
    matches = [0] * max_n
    totals = [0] * max_n
    ref_length = hyp_length = 0
    for ref, hyp in zip(references, hypotheses):
        ref_length += len(ref)
        hyp_length += len(hyp)
        for n in range(1, max_n + 1):
            hyp_grams = _ngrams(hyp, n)
            ref_grams = _ngrams(ref, n)
            matches[n - 1] += sum(min(c, ref_grams[g]) for g, c in hyp_grams.items())
            totals[n - 1] += max(0, len(hyp) - n + 1)
    if hyp_length == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity = 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)
    return brevity * math.exp(log_precision)

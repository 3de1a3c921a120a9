"""Growing a checkpoint's word-level vocabulary for data with words it never had.

New rows are appended to every word-embedding table and to the decoder's
output layer (tied to its embeddings), initialised to the mean embedding so a
new word starts as "some word" rather than as noise.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def extend_vocabulary(model, tokenizer, words: Sequence[str]) -> int:
    added = tokenizer.add_tokens([w for w in words if w not in tokenizer.get_vocab()])
    if not added:
        return 0
    size = len(tokenizer)
    for module in list(model.modules()):
        embeddings = getattr(module, "word_embeddings", None)
        if isinstance(embeddings, nn.Embedding) and embeddings.num_embeddings < size:
            module.word_embeddings = _grown_embedding(embeddings, size)
    for module in list(model.modules()):
        decoder = getattr(module, "decoder", None)
        if isinstance(decoder, nn.Linear) and hasattr(module, "bias") and decoder.out_features < size:
            module.decoder = _grown_linear(decoder, size)
            module.bias = module.decoder.bias
    model.config.text_config.vocab_size = size
    model.tie_weights()
    return added


def _grown_embedding(old: nn.Embedding, size: int) -> nn.Embedding:
    new = nn.Embedding(size, old.embedding_dim, padding_idx=old.padding_idx).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight[: old.num_embeddings] = old.weight
        new.weight[old.num_embeddings:] = old.weight.mean(dim=0)
    return new


def _grown_linear(old: nn.Linear, size: int) -> nn.Linear:
    new = nn.Linear(old.in_features, size).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight[: old.out_features] = old.weight
        new.weight[old.out_features:] = old.weight.mean(dim=0)
        new.bias[: old.out_features] = old.bias
        new.bias[old.out_features:] = old.bias.min()
    return new

"""A bounded cache of vision-encoder outputs keyed by image content.

A second question, or more texts, on the same image must not re-run the ViT.
Entries are whatever the adapter stores (tensors on the model's device); the
bound is on entry count, since all entries of one model have the same size.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Sequence, TypeVar

V = TypeVar("V")


class VisionCache(Generic[V]):
    def __init__(self, capacity: int = 64):
        self.capacity = max(0, int(capacity))
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get_many(self, keys: Sequence[Hashable], compute: Callable[[list[int]], list[V]]) -> list[V]:
        """Values for `keys`; `compute(indices)` is called once with the indices of the misses."""
        found: dict[int, V] = {}
        missing = []
        for i, key in enumerate(keys):
            if key in self._entries:
                self._entries.move_to_end(key)
                found[i] = self._entries[key]
                self.hits += 1
            else:
                missing.append(i)
        if missing:
            self.misses += len(missing)
            # The same image twice in one call is computed once.
            unique: dict[Hashable, int] = {}
            for i in missing:
                unique.setdefault(keys[i], i)
            values = compute(list(unique.values()))
            by_key = dict(zip(unique.keys(), values))
            for key, value in by_key.items():
                self._put(key, value)
            for i in missing:
                found[i] = by_key[keys[i]]
        return [found[i] for i in range(len(keys))]

    def _put(self, key: Hashable, value: V) -> None:
        if self.capacity == 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

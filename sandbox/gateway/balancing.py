"""Weighted choice the way APISIX makes it: smooth weighted round-robin.

APISIX's ``roundrobin`` balancer (and the traffic-split plugin's choice among
``weighted_upstreams``) interleave picks by weight: over any run of ``sum(weights)`` picks each
item is chosen exactly ``weight`` times, so 70/30 over 10,000 requests is 7,000/3,000. This is
nginx's smooth variant: every pick adds each item's weight to its running score, takes the
highest score (first one on ties) and subtracts the total from it. Weight-0 items are never
chosen; with no positive weight ``pick`` returns ``None``. ``HashRing`` is the ``chash``
balancer of an ApisixUpstream.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class SmoothWeighted(Generic[T]):
    def __init__(self, items: Sequence[tuple[T, int]]) -> None:
        self._items = [(item, weight) for item, weight in items if weight > 0]
        self._total = sum(weight for _, weight in self._items)
        self._current = [0] * len(self._items)

    def pick(self) -> T | None:
        if not self._items:
            return None
        best = 0
        for i, (_, weight) in enumerate(self._items):
            self._current[i] += weight
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= self._total
        return self._items[best][0]


class RoundRobin(Generic[T]):
    """Equal weights: each item in turn (APISIX gives every endpoint node weight 100)."""

    def __init__(self, items: Sequence[T]) -> None:
        self._items = list(items)
        self._next = 0

    def __len__(self) -> int:
        return len(self._items)

    def pick(self) -> T | None:
        if not self._items:
            return None
        item = self._items[self._next % len(self._items)]
        self._next = (self._next + 1) % len(self._items)
        return item


class HashRing(Generic[T]):
    """``chash``: a hash ring with ``weight`` points per item (CRC-32 of ``<label>#<i>``); a
    key starts at the first point at or after its own hash, so the same key picks the same
    item while the items stay, and losing an item moves only its keys. ``walk`` lists the
    distinct items from there on, the order retries follow."""

    def __init__(self, items: Sequence[tuple[T, str, int]]) -> None:
        points = [
            (zlib.crc32(f"{label}#{i}".encode()), index)
            for index, (_, label, weight) in enumerate(items)
            for i in range(max(weight, 0))
        ]
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [index for _, index in points]
        self._items = [item for item, _, _ in items]

    def walk(self, key: str) -> list[T]:
        if not self._hashes:
            return []
        start = bisect.bisect_left(self._hashes, zlib.crc32(key.encode())) % len(self._hashes)
        seen: list[int] = []
        for offset in range(len(self._owners)):
            owner = self._owners[(start + offset) % len(self._owners)]
            if owner not in seen:
                seen.append(owner)
                if len(seen) == len(self._items):
                    break
        return [self._items[i] for i in seen]

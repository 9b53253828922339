"""Weighted choice the way APISIX makes it: smooth weighted round-robin.

APISIX's ``roundrobin`` balancer (and the traffic-split plugin's choice among
``weighted_upstreams``) interleave picks by weight: over any run of ``sum(weights)`` picks each
item is chosen exactly ``weight`` times, so 70/30 over 10,000 requests is 7,000/3,000. This is
nginx's smooth variant: every pick adds each item's weight to its running score, takes the
highest score (first one on ties) and subtracts the total from it. Weight-0 items are never
chosen; with no positive weight ``pick`` returns ``None``.
"""

from __future__ import annotations

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

"""Smooth weighted round-robin: exact ratios over a cycle, interleaving, weight 0."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.gateway import balancing


@pytest.mark.parametrize(
    ("weights", "n"), [((70, 30), 10_000), ((90, 10), 1000), ((1, 1, 1), 999), ((5, 0, 5), 100)]
)
def test_counts_are_exact_over_whole_cycles(weights, n):
    wrr = balancing.SmoothWeighted(list(enumerate(weights)))
    counts = collections.Counter(wrr.pick() for _ in range(n))
    total = sum(weights)
    assert {k: v for k, v in counts.items()} == {
        i: n * w // total for i, w in enumerate(weights) if w
    }


def test_smooth_interleaving():
    wrr = balancing.SmoothWeighted([("a", 5), ("b", 1), ("c", 1)])
    assert [wrr.pick() for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


def test_weight_zero_and_empty():
    assert balancing.SmoothWeighted([("a", 0), ("b", 0)]).pick() is None
    assert balancing.SmoothWeighted([]).pick() is None
    wrr = balancing.SmoothWeighted([("a", 0), ("b", 100)])
    assert {wrr.pick() for _ in range(50)} == {"b"}


@given(st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=6), st.integers(1, 5))
def test_property_every_cycle_is_exact(weights, cycles):
    wrr = balancing.SmoothWeighted(list(enumerate(weights)))
    total = sum(weights)
    counts = collections.Counter(wrr.pick() for _ in range(total * cycles))
    assert counts == collections.Counter({i: w * cycles for i, w in enumerate(weights) if w})


def test_round_robin():
    rr = balancing.RoundRobin(["a", "b", "c"])
    assert [rr.pick() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    assert len(rr) == 3
    assert balancing.RoundRobin([]).pick() is None

"""Flagger's readiness rule for the primary (``isDeploymentReady``), as a table."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from services.traffic_shifter.kube import workloads

NOW = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.UTC)


def deployment(generation: int = 1, **status: Any) -> dict[str, Any]:
    """A primary of 2 replicas with ``status``."""
    return {
        "metadata": {"name": "podinfo-primary", "generation": generation},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, **status},
    }


def unavailable_since(minutes: int) -> list[dict[str, Any]]:
    since = (NOW - datetime.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return [
        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
        {
            "type": "Available",
            "status": "False",
            "reason": "MinimumReplicasUnavailable",
            "lastUpdateTime": since,
        },
    ]


@pytest.mark.parametrize(
    ("obj", "threshold", "expected"),
    [
        (deployment(updatedReplicas=2, replicas=2, availableReplicas=2), 100, None),
        (
            deployment(generation=2, updatedReplicas=2, replicas=2, availableReplicas=2),
            100,
            ("observed deployment generation less than desired generation", False),
        ),
        (
            deployment(updatedReplicas=1, replicas=2, availableReplicas=1),
            100,
            ("1 out of 2 new replicas have been updated", False),
        ),
        (
            deployment(updatedReplicas=2, replicas=3, availableReplicas=2),
            100,
            ("1 old replicas are pending termination", False),
        ),
        (
            deployment(updatedReplicas=2, replicas=2, availableReplicas=1),
            100,
            ("1 of 2 (readyThreshold 100%) updated replicas are available", False),
        ),
        (deployment(updatedReplicas=2, replicas=2, availableReplicas=1), 50, None),
        (
            deployment(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]),
            100,
            ("exceeded its progress deadline", True),
        ),
        (
            deployment(
                updatedReplicas=2, replicas=2, availableReplicas=0, conditions=unavailable_since(5)
            ),
            100,
            ("0 of 2", False),
        ),
        (
            deployment(
                updatedReplicas=2, replicas=2, availableReplicas=0, conditions=unavailable_since(15)
            ),
            100,
            ("0 of 2", True),  # unavailable for longer than the 600 s deadline: final
        ),
    ],
)
def test_not_ready(obj: dict[str, Any], threshold: int, expected: tuple[str, bool] | None) -> None:
    found = workloads.not_ready(obj, threshold, 600, NOW)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert expected[0] in found[0]
    assert found[1] is expected[1]

"""What the demo deploys, changes and waits for: Flagger's APISIX tutorial's objects, the two
revisions, and every deadline (seconds)."""

from __future__ import annotations

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "tests" / "data" / "manifests"
# the tutorial's order: the workload and its autoscaler, the route, then the canary
MANIFEST_FILES = (
    "podinfo-deployment.yaml",
    "podinfo-hpa.yaml",
    "podinfo-apisixroute.yaml",
    "podinfo-canary.yaml",
)
NAMESPACE = "test"
CANARY = "podinfo"
TARGET = "podinfo"  # the Canary's targetRef
PRIMARY = f"{TARGET}-primary"
CONTAINER = "podinfod"
GOOD_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.1"
FAULTY_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.2"
FAULT_VARIABLE = "SANDBOX_ERROR_RATE"  # share of requests the sandbox's pods answer with 500
FAULT_VALUE = "0.5"

# Deadlines, seconds. The seed Canary steps every 10 s: initialization takes ~15 s, a promotion
# ~9 steps (~90 s), a rollback ~12 (threshold 10: ~120 s); the stack starts in ~10 s.
UP_TIMEOUT_S = 120.0  # python -m sandbox up (it gives its components 60 s to answer)
KUBECTL_TIMEOUT_S = 30.0  # one kubectl command
INITIALIZED_TIMEOUT_S = 60.0  # kubectl apply -> phase Initialized
REVISION_TIMEOUT_S = 30.0  # the change -> "New revision detected" on the bus
PROMOTION_TIMEOUT_S = 150.0  # new revision -> Succeeded
ROLLBACK_TIMEOUT_S = 180.0  # new revision -> Failed
DEADLINE_S = 300.0  # the whole demo, teardown excluded (the README promises under 5 minutes)
UP_INTERRUPT_S = 30.0  # an interrupted `sandbox up` stops what it started within this
DOWN_TIMEOUT_S = 90.0  # sandbox down: SIGTERM to all, 10 s, SIGKILL what is left, 5 s
POLL_S = 1.0  # between two `kubectl get canary` while waiting for a phase (a polling period)


def shown_path(path: pathlib.Path) -> str:
    """``path`` relative to the repository when it is inside it (as a user would type it)."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)

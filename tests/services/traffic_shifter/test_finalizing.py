"""SetFinalizer and RevertCanary on the simulated cluster, checked with the official client: the
finalizer kept next to others, a revert that scales the target back up, waits for it, hands
the apex Service to the target's pods (and out of the Canary's ownership), sends the canary
route to the primary, changes nothing when repeated, and leaves the user's route serving
once Kubernetes has collected what the Canary owned."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from libs import errors, messages
from libs.model import canary as canary_model
from services.traffic_shifter import capabilities, handlers
from services.traffic_shifter.kube import finalizing

from .conftest import (
    CANARY,
    DEADLINE_S,
    Official,
    initialized,
    set_weights,
    until,
)

pytestmark = pytest.mark.integration

OTHER = "example.com/keep"
REVERT = messages.RevertCanary(canary=CANARY, target="podinfo", service="podinfo")
OWNED = [
    ("Deployment", "podinfo-primary"),
    ("Service", "podinfo-primary"),
    ("Service", "podinfo-canary"),
    ("ApisixRoute", "podinfo-podinfo-canary"),
]


def set_finalizer(present: bool) -> messages.SetFinalizer:
    return messages.SetFinalizer(canary=CANARY, present=present)


async def finalizers(official: Official) -> list[str]:
    found: list[str] = (await official.get("Canary", "podinfo"))["metadata"].get("finalizers") or []
    return found


async def delete_canary(official: Official) -> None:
    await asyncio.to_thread(
        official.custom.delete_namespaced_custom_object,
        "flagger.app",
        "v1beta1",
        CANARY.namespace,
        "canaries",
        "podinfo",
    )


async def reverted(platform: capabilities.Platform) -> messages.WorkloadApplied:
    """RevertCanary retried the way the analyzer retries a step while the target rolls out."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            return await platform.workloads.revert(REVERT)
        except errors.TemporaryError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"RevertCanary still failing after {DEADLINE_S}s: {exc}")
            await asyncio.sleep(0.1)


async def test_the_finalizer_is_added_and_removed_next_to_other_finalizers(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    shifter = handlers.Shifter(platform)
    await official.patch("Canary", "podinfo", {"metadata": {"finalizers": [OTHER]}})

    reply = await shifter.workload(set_finalizer(True))
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo")
    assert await finalizers(official) == [OTHER, canary_model.FINALIZER]
    version = (await official.get("Canary", "podinfo"))["metadata"]["resourceVersion"]
    await shifter.workload(set_finalizer(True))  # already there: nothing written
    assert (await official.get("Canary", "podinfo"))["metadata"]["resourceVersion"] == version

    await shifter.workload(set_finalizer(False))
    assert await finalizers(official) == [OTHER]
    await shifter.workload(set_finalizer(False))
    assert await finalizers(official) == [OTHER]


async def test_a_deleted_canary_gets_no_finalizer_and_a_gone_one_needs_none(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    await official.patch("Canary", "podinfo", {"metadata": {"finalizers": [OTHER]}})
    await delete_canary(official)
    assert (await official.get("Canary", "podinfo"))["metadata"]["deletionTimestamp"]

    # Kubernetes forbids new finalizers on an object being deleted: refused, not retried
    with pytest.raises(ApiException) as forbidden:
        await official.patch("Canary", "podinfo", {"metadata": {"finalizers": [OTHER, "x/y"]}})
    assert forbidden.value.status == 403
    with pytest.raises(errors.InvalidInput, match="is being deleted"):
        await platform.workloads.set_finalizer(set_finalizer(True))
    assert await finalizers(official) == [OTHER]

    await official.patch("Canary", "podinfo", {"metadata": {"finalizers": None}})
    assert not await official.exists("Canary", "podinfo")
    # a removal whose reply was lost, repeated, finds the Canary gone: done
    reply = await platform.workloads.set_finalizer(set_finalizer(False))
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo")
    with pytest.raises(errors.NotFound, match="Canary test/podinfo not found"):
        await platform.workloads.set_finalizer(set_finalizer(True))


async def test_revert_gives_the_target_back_and_the_apex_outlives_the_canary(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    await initialized(platform)
    await official.patch("Deployment", "podinfo-primary", {"spec": {"replicas": 2}})
    await platform.router.reconcile(set_weights(70, 30))
    await platform.router.set_weights(set_weights(70, 30), capabilities.Weights(70, 30))
    assert (await official.get("Deployment", "podinfo"))["spec"]["replicas"] == 0
    apex = await official.get("Service", "podinfo")
    assert apex["spec"]["selector"] == {"app": "podinfo-primary"}
    assert apex["metadata"]["ownerReferences"][0]["uid"] == seed["metadata"]["uid"]

    # the target is not ready yet: it is scaled up, but nothing is routed to it
    with pytest.raises(errors.TemporaryError, match=r"podinfo\.test not ready"):
        await platform.workloads.revert(REVERT)
    assert (await official.get("Deployment", "podinfo"))["spec"]["replicas"] == 2
    assert (await official.get("Service", "podinfo"))["spec"]["selector"] == {
        "app": "podinfo-primary"
    }

    reply = await reverted(platform)
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=2)
    apex = await official.get("Service", "podinfo")
    assert apex["spec"]["selector"] == {"app": "podinfo"}
    assert "ownerReferences" not in apex["metadata"]
    assert apex["metadata"]["labels"] == {"app": "podinfo"}
    assert await platform.router.get_weights(set_weights(100, 0)) == capabilities.Weights(100, 0)

    # applying it again changes nothing
    watched = [("Service", "podinfo"), ("ApisixRoute", "podinfo-podinfo-canary")]
    before = await official.versions(*watched, ("Deployment", "podinfo"))
    assert await platform.workloads.revert(REVERT) == reply
    assert await official.versions(*watched, ("Deployment", "podinfo")) == before

    # the Canary is deleted: held by the finalizer, it keeps what it owns ...
    await platform.workloads.set_finalizer(set_finalizer(True))
    await delete_canary(official)
    for kind, name in OWNED:
        assert await official.exists(kind, name), (kind, name)
    # ... until the finalizer goes: then it is collected; the apex Service and the user's
    # route stay
    await platform.workloads.set_finalizer(set_finalizer(False))
    assert not await official.exists("Canary", "podinfo")
    for kind, name in OWNED:
        await until(
            f"{kind} {name} collected",
            lambda kind=kind, name=name: official.exists(kind, name),  # type: ignore[misc]
            lambda exists: not exists,
        )
    assert (await official.get("Service", "podinfo"))["spec"]["selector"] == {"app": "podinfo"}
    assert await official.exists("ApisixRoute", "podinfo")
    assert (await official.get("Deployment", "podinfo"))["spec"]["replicas"] == 2


async def test_revert_keeps_a_users_apex_and_its_other_owners(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    (holder,) = await official.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "holder"}, "data": {}}
    )
    other_owner = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "holder",
        "uid": holder["metadata"]["uid"],
    }
    await official.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "podinfo",
                "labels": {"team": "web"},
                "ownerReferences": [other_owner],
            },
            "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 80}]},
        }
    )
    await initialized(platform)
    assert (await official.get("Service", "podinfo"))["spec"]["selector"] == {
        "app": "podinfo-primary"
    }
    await reverted(platform)
    apex = await official.get("Service", "podinfo")
    assert apex["spec"]["selector"] == {"app": "podinfo"}
    assert apex["metadata"]["ownerReferences"] == [other_owner]
    assert apex["metadata"]["labels"] == {"team": "web"}
    # no canary route was ever made: nothing to send to the primary, and no error
    assert not await official.exists("ApisixRoute", "podinfo-podinfo-canary")
    # target replicas of the manifest (1) were scaled to 0 at initialization: the primary's
    assert (await official.get("Deployment", "podinfo"))["spec"]["replicas"] == 1


async def test_revert_of_a_missing_canary_is_not_found(
    platform: capabilities.Platform, official: Official
) -> None:
    with pytest.raises(errors.NotFound, match="Canary test/podinfo not found"):
        await platform.workloads.revert(REVERT)


def test_finalizers_are_changed_without_touching_the_others() -> None:
    flagger = canary_model.FINALIZER
    assert finalizing.finalizers_with({}, True) == [flagger]
    assert finalizing.finalizers_with({"finalizers": ["a"]}, True) == ["a", flagger]
    assert finalizing.finalizers_with({"finalizers": ["a", flagger]}, True) is None
    assert finalizing.finalizers_with({"finalizers": [flagger, "a"]}, False) == ["a"]
    assert finalizing.finalizers_with({"finalizers": [flagger]}, False) == []
    assert finalizing.finalizers_with({"finalizers": ["a"]}, False) is None

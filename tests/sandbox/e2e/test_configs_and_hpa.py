"""Config tracking and the HPA end to end, each canary in a namespace of its own on one sandbox
stack, with the five services as processes and everything checked through the real kubectl:
the primary runs on ``-primary`` copies of the target's ConfigMaps and Secrets, a change to a
tracked config is a new revision whose data reaches the copy at promotion, an opted-out config
is neither copied nor a revision; an ``autoscalerRef`` gets a primary HPA with
``primaryScalerReplicas``, the canary is scaled up by Flagger's rule, and the primary HPA
follows the target's HPA at promotion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    Docs,
    get,
    initialized,
    new_image,
    record,
    start,
    valid,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TRACKING = "flagger.app/config-tracking"


async def must_get(stack: support.Stack, namespace: str, kind: str, name: str) -> dict[str, Any]:
    found = await get(stack, namespace, kind, name)
    assert found is not None, f"{kind}/{name} not found in {namespace}"
    return found


async def patch(stack: support.Stack, namespace: str, kind: str, name: str, body: Any) -> None:
    await stack.kubectl(
        "patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(body)
    )


def with_configs(namespace: str) -> Any:
    """The podinfo Deployment reading a ConfigMap through env, a Secret through a volume, and
    an opted-out ConfigMap through envFrom."""

    def edit(docs: Docs) -> None:
        pod = docs[1]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        container.setdefault("env", []).append(
            {
                "name": "PODINFO_UI_MESSAGE",
                "valueFrom": {"configMapKeyRef": {"name": "podinfo-config", "key": "message"}},
            }
        )
        container["envFrom"] = [{"configMapRef": {"name": "podinfo-untracked"}}]
        container["volumeMounts"] = [{"name": "token", "mountPath": "/etc/token"}]
        pod["volumes"] = [{"name": "token", "secret": {"secretName": "podinfo-secret"}}]
        meta = {"namespace": namespace}
        docs += [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "podinfo-config", **meta},
                "data": {"message": "v1"},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "podinfo-secret", **meta},
                "type": "Opaque",
                "data": {"token": "czNjcjN0"},
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "podinfo-untracked",
                    "annotations": {TRACKING: "disabled"},
                    **meta,
                },
                "data": {"PODINFO_LEVEL": "info"},
            },
        ]

    return edit


async def test_configs_are_copied_and_tracked_and_a_config_change_is_a_revision(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    ns = "configs"
    await start(stack, service)
    recorder = await record(stack_nc, ns)
    await initialized(stack, ns, edit=with_configs(ns))

    copied = await must_get(stack, ns, "configmap", "podinfo-config-primary")
    assert copied["data"] == {"message": "v1"}
    assert [o["kind"] for o in copied["metadata"]["ownerReferences"]] == ["Canary"]
    secret = await must_get(stack, ns, "secret", "podinfo-secret-primary")
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"token": "czNjcjN0"}
    assert await get(stack, ns, "configmap", "podinfo-untracked-primary") is None
    pod = (await must_get(stack, ns, "deployment", "podinfo-primary"))["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["PODINFO_UI_MESSAGE"]["valueFrom"]["configMapKeyRef"]["name"] == (
        "podinfo-config-primary"
    )
    assert container["envFrom"] == [{"configMapRef": {"name": "podinfo-untracked"}}]
    assert pod["volumes"][0]["secret"]["secretName"] == "podinfo-secret-primary"
    status = await wait_for(stack, ns, lambda s: bool(s.get("trackedConfigs")), "trackedConfigs")
    tracked = dict(status["trackedConfigs"])
    assert set(tracked) == {"configmap/podinfo-config", "secret/podinfo-secret"}
    applied = status["lastAppliedSpec"]

    # an opted-out config changes, then a tracked one: one revision, the tracked one's
    await patch(stack, ns, "configmap", "podinfo-untracked", {"data": {"PODINFO_LEVEL": "debug"}})
    await patch(stack, ns, "configmap", "podinfo-config", {"data": {"message": "v2"}})
    status = await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert status["lastAppliedSpec"] == applied  # the pod template did not change
    assert set(status["trackedConfigs"]) == set(tracked)
    assert (
        status["trackedConfigs"]["configmap/podinfo-config"]
        != (tracked["configmap/podinfo-config"])
    )
    assert status["trackedConfigs"]["secret/podinfo-secret"] == tracked["secret/podinfo-secret"]
    assert recorder.messages("new_revision") == [f"New revision detected! Scaling up podinfo.{ns}"]
    assert recorder.weights() == [10, 20, 30, 40, 50]
    copied = await must_get(stack, ns, "configmap", "podinfo-config-primary")
    assert copied["data"] == {"message": "v2"}  # the primary gets the config at promotion
    assert await get(stack, ns, "configmap", "podinfo-untracked-primary") is None
    valid(recorder.events)


def with_hpa(namespace: str) -> Any:
    def edit(docs: Docs) -> None:
        docs.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "podinfo", "namespace": namespace},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "podinfo",
                    },
                    "minReplicas": 2,
                    "maxReplicas": 4,
                    "metrics": [utilization(99)],
                },
            }
        )

    return edit


def utilization(percent: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": percent},
        },
    }


async def test_an_hpa_gets_a_primary_hpa_and_scales_the_canary_by_flaggers_rule(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    ns = "hpa"
    await start(stack, service)
    recorder = await record(stack_nc, ns)
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "podinfo",
        "primaryScalerReplicas": {"minReplicas": 3, "maxReplicas": 5},
    }
    await initialized(stack, ns, edit=with_hpa(ns), autoscalerRef=autoscaler)

    hpa = await must_get(stack, ns, "hpa", "podinfo-primary")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo-primary",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 5)
    assert hpa["spec"]["metrics"] == [utilization(99)]
    assert [o["kind"] for o in hpa["metadata"]["ownerReferences"]] == ["Canary"]

    async def primary_replicas() -> int:
        found = await must_get(stack, ns, "deployment", "podinfo-primary")
        return int(found["spec"]["replicas"])

    await support.poll(primary_replicas, lambda r: r == 3, timeout=60, what="primary at 3")

    # the target's HPA changes; the primary's follows at the next promotion, not before
    await patch(
        stack, ns, "hpa", "podinfo", {"spec": {"maxReplicas": 6, "metrics": [utilization(80)]}}
    )
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Progressing", "Progressing")
    # Flagger's scale-up: the target is at 0 and has an HPA, whose minReplicas (2) is > 1
    target = await must_get(stack, ns, "deployment", "podinfo")
    assert target["spec"]["replicas"] == 2
    hpa = await must_get(stack, ns, "hpa", "podinfo-primary")
    assert hpa["spec"]["metrics"] == [utilization(99)]

    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    hpa = await must_get(stack, ns, "hpa", "podinfo-primary")
    assert hpa["spec"]["metrics"] == [utilization(80)]
    # primaryScalerReplicas still bound the primary (Flagger: they override the target's)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 5)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "podinfo-primary"
    # with an HPA, promotion leaves the primary's replicas to it
    assert await primary_replicas() == 3
    assert recorder.messages("new_revision") == [f"New revision detected! Scaling up podinfo.{ns}"]
    valid(recorder.events)


async def test_a_target_hpa_without_replica_overrides_reaches_the_primary_hpa(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    """Without primaryScalerReplicas the primary HPA copies the target's bounds, and a change
    of the target HPA's maxReplicas reaches it by the end of the next promotion."""
    ns = "hpa-bounds"
    await start(stack, service)
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "podinfo",
    }
    await initialized(stack, ns, edit=with_hpa(ns), autoscalerRef=autoscaler)
    hpa = await must_get(stack, ns, "hpa", "podinfo-primary")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    await patch(stack, ns, "hpa", "podinfo", {"spec": {"maxReplicas": 6}})
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    hpa = await must_get(stack, ns, "hpa", "podinfo-primary")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)

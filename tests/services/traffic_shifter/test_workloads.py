"""InitializeWorkload, ScaleWorkload and PromoteWorkload on the simulated cluster, checked with
the official client: Flagger's primary Deployment, Services, config copies, primary HPA,
owner references, idempotency and promotion copy rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from libs import errors, messages
from services.traffic_shifter import capabilities
from services.traffic_shifter.kube import workloads
from services.watcher import revisions

from .conftest import CANARY, Official, deployment, initialize, initialized, manifest, until

pytestmark = pytest.mark.integration

SERVICES = [("Service", "podinfo"), ("Service", "podinfo-primary"), ("Service", "podinfo-canary")]
DEPLOYMENTS = [("Deployment", "podinfo"), ("Deployment", "podinfo-primary")]


def owner(canary: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "name": "podinfo",
        "uid": canary["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def own_annotations(obj: dict[str, Any]) -> dict[str, str]:
    """Annotations without the Deployment controller's own."""
    values = obj["metadata"].get("annotations") or {}
    return {k: v for k, v in values.items() if not k.startswith("deployment.kubernetes.io/")}


async def test_initialize_builds_flaggers_primary_and_services_then_scales_the_target_down(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    # the primary was just created: it cannot be ready, and the apex must not point at it yet
    with pytest.raises(workloads.NotReady, match=r"podinfo-primary\.test not ready: waiting"):
        await platform.workloads.initialize(initialize())
    assert not await official.exists("Service", "podinfo")
    assert (await official.get("Deployment", "podinfo"))["spec"]["replicas"] == 1

    reply = await initialized(platform)
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo-primary", replicas=1)

    target = await official.get("Deployment", "podinfo")
    primary = await official.get("Deployment", "podinfo-primary")
    assert target["spec"]["replicas"] == 0  # Flagger scales the target down at initialization
    assert primary["metadata"]["labels"] == {"app": "podinfo-primary"}
    assert primary["metadata"]["ownerReferences"] == [owner(seed)]
    assert own_annotations(primary) == {}
    spec = primary["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert spec["replicas"] == 1
    for field in ("minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds", "strategy"):
        assert spec[field] == target["spec"][field], field
    template = spec["template"]
    assert template["metadata"]["labels"] == {"app": "podinfo-primary"}
    annotations = dict(template["metadata"]["annotations"])
    rollout_id = annotations.pop("flagger-id")
    assert len(rollout_id) == 36
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9797"}
    assert template["spec"] == target["spec"]["template"]["spec"]

    port = {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898}
    for name, selects in (
        ("podinfo", "podinfo-primary"),
        ("podinfo-primary", "podinfo-primary"),
        ("podinfo-canary", "podinfo"),
    ):
        service = await official.get("Service", name)
        assert service["metadata"]["labels"] == {"app": name}, name
        assert service["metadata"]["ownerReferences"] == [owner(seed)], name
        assert service["spec"]["selector"] == {"app": selects}, name
        assert service["spec"]["ports"] == [port], name
        assert service["spec"]["type"] == "ClusterIP"

    # applying it again changes nothing
    before = await official.versions(*SERVICES, *DEPLOYMENTS)
    assert await platform.workloads.initialize(initialize()) == reply
    assert await official.versions(*SERVICES, *DEPLOYMENTS) == before


async def test_a_users_apex_service_is_taken_over_but_not_owned(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    await official.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "podinfo", "labels": {"team": "web"}},
            "spec": {
                "selector": {"app": "podinfo"},
                "ports": [{"name": "web", "port": 8080, "targetPort": "http"}],
            },
        }
    )
    await initialized(platform)
    apex = await official.get("Service", "podinfo")
    assert apex["spec"]["selector"] == {"app": "podinfo-primary"}
    assert apex["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9898}
    ]
    # Flagger manages a Service's metadata only when it created it; no owner is added, so
    # deleting the Canary never deletes the user's Service
    assert apex["metadata"]["labels"] == {"team": "web"}
    assert "ownerReferences" not in apex["metadata"]


CONFIG_OBJECTS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "podinfo-config", "labels": {"team": "web"}},
        "data": {"PODINFO_UI_MESSAGE": "v1"},
        "binaryData": {"logo.png": "iVBORw0K"},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "podinfo-secret"},
        "type": "Opaque",
        "data": {"token": "c2VjcmV0"},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "registry"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "e30="},
    },
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "podinfo-untracked",
            "annotations": {"flagger.app/config-tracking": "disabled"},
        },
        "data": {"a": "b"},
    },
]


def configured_deployment() -> dict[str, Any]:
    body = deployment()
    pod = body["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "podinfo-config"}}]
    container["env"].append(
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "podinfo-secret", "key": "token"}}}
    )
    pod["volumes"] = [
        {"name": "config", "configMap": {"name": "podinfo-config"}},
        {"name": "registry", "secret": {"secretName": "registry"}},
        {
            "name": "projected",
            "projected": {
                "sources": [
                    {"configMap": {"name": "podinfo-untracked"}},
                    {"configMap": {"name": "nope", "optional": True}},
                ]
            },
        },
    ]
    pod["topologySpreadConstraints"] = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "podinfo"}},
        }
    ]
    return body


async def test_configs_are_copied_to_primary_configs_and_the_hpa_to_a_primary_hpa(
    platform: capabilities.Platform, official: Official
) -> None:
    canary = manifest("podinfo-canary.yaml")
    canary["spec"]["autoscalerRef"] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "podinfo",
        "primaryScalerReplicas": {"minReplicas": 3},
    }
    await official.create(*CONFIG_OBJECTS)
    _, _, created = await official.create(
        configured_deployment(), manifest("podinfo-hpa.yaml"), canary
    )
    await initialized(platform, initialize(autoscaler="podinfo"))

    config = await official.get("ConfigMap", "podinfo-config-primary")
    assert config["data"] == {"PODINFO_UI_MESSAGE": "v1"}
    assert config["binaryData"] == {"logo.png": "iVBORw0K"}
    assert config["metadata"]["ownerReferences"] == [owner(created)]
    assert not config["metadata"].get("labels")  # no include prefix configured
    secret = await official.get("Secret", "podinfo-secret-primary")
    assert (secret["type"], secret["data"]) == ("Opaque", {"token": "c2VjcmV0"})
    assert secret["metadata"]["ownerReferences"] == [owner(created)]
    for skipped in ("registry-primary", "podinfo-untracked-primary", "nope-primary"):
        assert not await official.exists("Secret", skipped)
        assert not await official.exists("ConfigMap", skipped)

    pod = (await official.get("Deployment", "podinfo-primary"))["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "podinfo-config-primary"}}]
    assert container["env"][-1]["valueFrom"]["secretKeyRef"]["name"] == "podinfo-secret-primary"
    volumes = pod["volumes"]
    assert volumes[0]["configMap"]["name"] == "podinfo-config-primary"
    assert volumes[1]["secret"]["secretName"] == "registry"  # registry credentials: not copied
    sources = volumes[2]["projected"]["sources"]
    assert [s["configMap"]["name"] for s in sources] == ["podinfo-untracked", "nope"]
    assert pod["topologySpreadConstraints"][0]["labelSelector"] == {
        "matchLabels": {"app": "podinfo-primary"}
    }

    hpa = await official.get("HorizontalPodAutoscaler", "podinfo-primary")
    target_hpa = await official.get("HorizontalPodAutoscaler", "podinfo")
    assert hpa["metadata"]["ownerReferences"] == [owner(created)]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo-primary",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 4)
    assert hpa["spec"]["metrics"] == target_hpa["spec"]["metrics"]
    await until(
        "the primary HPA scales the primary",
        lambda: official.get("Deployment", "podinfo-primary"),
        lambda d: d["spec"]["replicas"] == 3,
    )

    copies = [
        ("ConfigMap", "podinfo-config-primary"),
        ("Secret", "podinfo-secret-primary"),
        ("HorizontalPodAutoscaler", "podinfo-primary"),
        ("Deployment", "podinfo-primary"),
        *SERVICES,
    ]
    before = await official.versions(*copies)
    # while the Canary initializes, the primary scaled by its HPA must be ready again first
    await initialized(platform, initialize(autoscaler="podinfo"))
    assert await official.versions(*copies) == before

    # a promotion refreshes the primary HPA and leaves replicas to it
    await official.patch("HorizontalPodAutoscaler", "podinfo", {"spec": {"maxReplicas": 6}})
    await official.patch("Deployment", "podinfo", {"spec": {"replicas": 2}})
    target = await official.get("Deployment", "podinfo")
    reply = await platform.workloads.promote(
        messages.PromoteWorkload(
            canary=CANARY, target="podinfo", revision=revisions.template_hash(target)
        )
    )
    assert reply.replicas == 3
    hpa = await official.get("HorizontalPodAutoscaler", "podinfo-primary")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)


async def replace_target(official: Official, change: Any) -> dict[str, Any]:
    target = await official.get("Deployment", "podinfo")
    body = copy.deepcopy(target)
    change(body)
    return await official.apps_replace(body)


async def test_promotion_follows_flaggers_copy_rules_and_is_idempotent(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    await initialized(platform)
    old_id = (await official.get("Deployment", "podinfo-primary"))["spec"]["template"]["metadata"][
        "annotations"
    ]["flagger-id"]
    await official.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "podinfo-config"},
            "data": {"PODINFO_UI_MESSAGE": "v1"},
        }
    )

    def new_revision(body: dict[str, Any]) -> None:
        body["metadata"]["labels"]["team"] = "web"
        body["metadata"].setdefault("annotations", {})["note"] = "v2"
        spec = body["spec"]
        spec.update(
            replicas=2,
            minReadySeconds=2,
            revisionHistoryLimit=3,
            progressDeadlineSeconds=120,
            strategy={"type": "Recreate"},
        )
        template = spec["template"]
        template["metadata"]["labels"]["version"] = "v2"
        template["metadata"]["annotations"]["team"] = "web"
        container = template["spec"]["containers"][0]
        container["image"] = "ghcr.io/stefanprodan/podinfo:6.0.1"
        container["envFrom"] = [{"configMapRef": {"name": "podinfo-config"}}]

    target = await replace_target(official, new_revision)
    revision = revisions.template_hash(target)  # what the watcher reports and the analyzer sends
    command = messages.PromoteWorkload(canary=CANARY, target="podinfo", revision=revision)
    reply = await platform.workloads.promote(command)
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo-primary", replicas=2)

    primary = await official.get("Deployment", "podinfo-primary")
    spec = primary["spec"]
    assert spec["replicas"] == 2  # no autoscaler: the target's replicas
    assert spec["minReadySeconds"] == 2
    assert spec["revisionHistoryLimit"] == 3
    assert spec["progressDeadlineSeconds"] == 120
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    template = spec["template"]
    assert template["metadata"]["labels"] == {"app": "podinfo-primary", "version": "v2"}
    annotations = dict(template["metadata"]["annotations"])
    new_id = annotations.pop("flagger-id")
    assert new_id != old_id  # the primary rolls out
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9797",
        "team": "web",
    }
    expected_pod = copy.deepcopy(target["spec"]["template"]["spec"])
    expected_pod["containers"][0]["envFrom"] = [
        {"configMapRef": {"name": "podinfo-config-primary"}}
    ]
    assert template["spec"] == expected_pod
    # Deployment metadata: labels and annotations only by include prefix (none by default)
    assert primary["metadata"]["labels"] == {"app": "podinfo-primary"}
    assert own_annotations(primary) == {}
    copied = await official.get("ConfigMap", "podinfo-config-primary")
    assert copied["data"] == {"PODINFO_UI_MESSAGE": "v1"}

    # the same command again: nothing changes, the primary does not restart
    before = await official.versions(
        ("Deployment", "podinfo-primary"), ("ConfigMap", "podinfo-config-primary")
    )
    assert await platform.workloads.promote(command) == reply
    assert (
        await official.versions(
            ("Deployment", "podinfo-primary"), ("ConfigMap", "podinfo-config-primary")
        )
        == before
    )

    # a config-only change is a new revision too: the copy is refreshed and the primary rolls
    await official.patch("ConfigMap", "podinfo-config", {"data": {"PODINFO_UI_MESSAGE": "v2"}})
    await platform.workloads.promote(command)
    copied = await official.get("ConfigMap", "podinfo-config-primary")
    assert copied["data"] == {"PODINFO_UI_MESSAGE": "v2"}
    rolled = await official.get("Deployment", "podinfo-primary")
    assert rolled["spec"]["template"]["metadata"]["annotations"]["flagger-id"] != new_id

    # a revision that is not the one analysed is never promoted
    stale = messages.PromoteWorkload(canary=CANARY, target="podinfo", revision="0123456789abcdef")
    with pytest.raises(errors.Conflict, match="not promoting a revision nobody checked"):
        await platform.workloads.promote(stale)


async def test_scale_sets_replicas_of_the_target_or_the_primary_only(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    await initialized(platform)
    reply = await platform.workloads.scale(
        messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=2)
    )
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=2)
    assert (await official.get("Deployment", "podinfo"))["spec"]["replicas"] == 2
    before = await official.versions(("Deployment", "podinfo"))
    await platform.workloads.scale(
        messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=2)
    )
    assert await official.versions(("Deployment", "podinfo")) == before
    reply = await platform.workloads.scale(
        messages.ScaleWorkload(canary=CANARY, workload="podinfo-primary", replicas=3)
    )
    assert reply.replicas == 3
    with pytest.raises(errors.InvalidInput, match="scales podinfo or podinfo-primary, not 'other'"):
        await platform.workloads.scale(
            messages.ScaleWorkload(canary=CANARY, workload="other", replicas=1)
        )


async def test_a_missing_target_or_canary_is_not_found(
    platform: capabilities.Platform, official: Official
) -> None:
    with pytest.raises(errors.NotFound, match="Canary test/podinfo not found"):
        await platform.workloads.initialize(initialize())
    await official.create(manifest("podinfo-canary.yaml"))
    with pytest.raises(errors.NotFound, match=r"Deployment test/podinfo \(the canary's target\)"):
        await platform.workloads.initialize(initialize())


def scale_up(estimate: int) -> messages.ScaleWorkload:
    return messages.ScaleWorkload(
        canary=CANARY, workload="podinfo", replicas=estimate, scale_up=True
    )


async def target_replicas(official: Official) -> int:
    replicas: int = (await official.get("Deployment", "podinfo"))["spec"]["replicas"]
    return replicas


async def rolled_out(official: Official, name: str) -> None:
    """Until the Deployment runs its replicas (the next scaling then cancels no pod start)."""

    def done(d: dict[str, Any]) -> bool:
        status = d.get("status") or {}
        want = d["spec"]["replicas"]
        return all(status.get(f, 0) == want for f in ("replicas", "readyReplicas"))

    await until(f"{name} rolled out", lambda: official.get("Deployment", name), done)


async def test_a_canary_scale_up_without_autoscaler_follows_flaggers_rule(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    await initialized(platform)
    await official.patch("Deployment", "podinfo-primary", {"spec": {"replicas": 3}})
    # the target is at 0: the primary's replicas, whatever the analyzer estimated
    reply = await platform.workloads.scale(scale_up(1))
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=3)
    assert await target_replicas(official) == 3
    await rolled_out(official, "podinfo")
    # the target already runs: its own replicas stay
    await official.patch("Deployment", "podinfo", {"spec": {"replicas": 2}})
    assert (await platform.workloads.scale(scale_up(5))).replicas == 2
    assert await target_replicas(official) == 2
    # a primary at 0 gives 1
    await platform.workloads.scale(
        messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=0)
    )
    await rolled_out(official, "podinfo-primary")
    await official.patch("Deployment", "podinfo-primary", {"spec": {"replicas": 0}})
    assert (await platform.workloads.scale(scale_up(4))).replicas == 1
    # scale-downs and the primary keep the command's replicas
    reply = await platform.workloads.scale(
        messages.ScaleWorkload(canary=CANARY, workload="podinfo-primary", replicas=2, scale_up=True)
    )
    assert reply.replicas == 2


async def test_a_canary_scale_up_with_an_hpa_takes_its_min_replicas(
    platform: capabilities.Platform, official: Official
) -> None:
    canary = manifest("podinfo-canary.yaml")
    canary["spec"]["autoscalerRef"] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "podinfo",
        "primaryScalerReplicas": {"minReplicas": 3, "maxReplicas": 5},
    }
    await official.create(deployment(), manifest("podinfo-hpa.yaml"), canary)  # HPA 2..4
    await initialized(platform, initialize(autoscaler="podinfo"))
    await until(
        "the primary HPA scales the primary",
        lambda: official.get("Deployment", "podinfo-primary"),
        lambda d: d["spec"]["replicas"] == 3,
    )
    assert await target_replicas(official) == 0
    # the target HPA's minReplicas (2), not the primary's replicas (3)
    reply = await platform.workloads.scale(scale_up(3))
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=2)
    assert await target_replicas(official) == 2
    await rolled_out(official, "podinfo")

    # minReplicas 1 is not > 1: one replica
    await platform.workloads.scale(
        messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=0)
    )
    await official.patch("HorizontalPodAutoscaler", "podinfo", {"spec": {"minReplicas": 1}})
    assert (await platform.workloads.scale(scale_up(3))).replicas == 1


async def test_scaling_a_missing_deployment_to_zero_is_done_and_up_is_not_found(
    platform: capabilities.Platform, official: Official
) -> None:
    """A target deleted mid-analysis is rolled back: it has no pods, so scaling it to zero is
    already done; scaling it up still says what is missing."""
    await official.create(manifest("podinfo-canary.yaml"))
    reply = await platform.workloads.scale(
        messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=0)
    )
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=0)
    with pytest.raises(errors.NotFound, match=r"Deployment test/podinfo \(to scale\) not found"):
        await platform.workloads.scale(
            messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=1)
        )

"""What the watcher counts as a revision, which configs it tracks, and readiness — pure."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from services.watcher import revisions

MANIFESTS = pathlib.Path(__file__).resolve().parents[1] / "data" / "manifests"


@pytest.fixture
def deployment() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((MANIFESTS / "podinfo-deployment.yaml").read_text())
    return data


def test_same_template_same_hash(deployment: dict[str, Any]) -> None:
    again = copy.deepcopy(deployment)
    assert revisions.template_hash(deployment) == revisions.template_hash(again)
    assert len(revisions.template_hash(deployment)) == revisions.REVISION_LENGTH


def test_replicas_labels_and_status_do_not_change_the_hash(deployment: dict[str, Any]) -> None:
    before = revisions.template_hash(deployment)
    deployment["spec"]["replicas"] = 7
    deployment["metadata"]["labels"]["team"] = "x"
    deployment["metadata"]["generation"] = 9
    deployment["status"] = {"readyReplicas": 7}
    assert revisions.template_hash(deployment) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.__setitem__("image", "ghcr.io/stefanprodan/podinfo:6.0.1"),
        lambda c: c["env"].append({"name": "X", "value": "1"}),
        lambda c: c["env"][0].__setitem__("value", "#ffffff"),
        lambda c: c.__setitem__("envFrom", [{"configMapRef": {"name": "cfg"}}]),
    ],
    ids=["image", "env-added", "env-value", "env-from"],
)
def test_container_changes_change_the_hash(deployment: dict[str, Any], change: Any) -> None:
    before = revisions.template_hash(deployment)
    change(deployment["spec"]["template"]["spec"]["containers"][0])
    assert revisions.template_hash(deployment) != before


def test_template_annotation_changes_the_hash(deployment: dict[str, Any]) -> None:
    before = revisions.template_hash(deployment)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    annotations["kubectl.kubernetes.io/restartedAt"] = "2024-01-01T00:00:00Z"
    assert revisions.template_hash(deployment) != before


def test_key_order_is_irrelevant(deployment: dict[str, Any]) -> None:
    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    reordered = reverse(deployment)
    assert list(reordered["spec"]) != list(deployment["spec"])
    assert revisions.template_hash(reordered) == revisions.template_hash(deployment)


def test_a_deployment_without_template_still_hashes() -> None:
    assert revisions.template_hash({}) == revisions.template_hash({"spec": {}})


def test_config_checksum_covers_data_and_binary_data_only() -> None:
    cm = {"metadata": {"name": "a", "resourceVersion": "1"}, "data": {"k": "v", "j": "w"}}
    same = {"metadata": {"name": "a", "resourceVersion": "9"}, "data": {"j": "w", "k": "v"}}
    assert revisions.config_checksum(cm) == revisions.config_checksum(same)
    assert len(revisions.config_checksum(cm)) == 64  # sha256 hex
    changed = {**cm, "data": {"k": "v2", "j": "w"}}
    assert revisions.config_checksum(changed) != revisions.config_checksum(cm)
    binary = {**cm, "binaryData": {"b": "AAEC"}}
    assert revisions.config_checksum(binary) != revisions.config_checksum(cm)
    secret = {"metadata": {"name": "a"}, "type": "Opaque", "data": {"k": "dg=="}}
    assert revisions.config_checksum(secret) != revisions.config_checksum(
        {**secret, "data": {"k": "dzI="}}
    )
    assert revisions.config_checksum({}) == revisions.config_checksum({"data": {}})


def test_observation_from_deployment_status(deployment: dict[str, Any]) -> None:
    deployment["metadata"]["generation"] = 4
    deployment["spec"]["replicas"] = 3
    deployment["status"] = {
        "observedGeneration": 3,
        "replicas": 4,
        "updatedReplicas": 2,
        "readyReplicas": 3,
        "availableReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
        ],
    }
    obs = revisions.observe(deployment, {"configmap/a": "x"})
    assert (obs.namespace, obs.name, obs.kind) == ("test", "podinfo", "Deployment")
    assert obs.revision == revisions.template_hash(deployment)
    assert (obs.generation, obs.observed_generation) == (4, 3)
    assert (obs.replicas, obs.status_replicas) == (3, 4)
    assert (obs.updated_replicas, obs.ready_replicas, obs.available_replicas) == (2, 3, 2)
    assert not obs.progress_deadline_exceeded
    assert obs.tracked_configs == {"configmap/a": "x"}


def test_progress_deadline_exceeded(deployment: dict[str, Any]) -> None:
    deployment["status"] = {
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ]
    }
    assert revisions.observe(deployment).progress_deadline_exceeded


def test_fresh_deployment_defaults(deployment: dict[str, Any]) -> None:
    obs = revisions.observe(deployment)  # no replicas in the manifest, no status yet
    assert obs.replicas == 1
    assert (obs.generation, obs.observed_generation, obs.ready_replicas) == (0, 0, 0)
    deployment["spec"]["replicas"] = 0
    assert revisions.observe(deployment).replicas == 0

"""Built-in objects are decoded, defaulted and validated as a real API server does."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import aiohttp
import pytest

from sandbox.kube import registry
from sandbox.kube.cluster import Cluster
from sandbox.kube.store import Store

from .conftest import Kubectl

pytestmark = pytest.mark.integration

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
SERVICES = "/api/v1/namespaces/default/services"
HPAS = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "example/web:1.0"}]},
        },
    },
}


def deployment(**changes: Any) -> dict[str, Any]:
    """DEPLOYMENT with ``changes`` set at dotted paths (``spec.replicas="two"``)."""
    out = copy.deepcopy(DEPLOYMENT)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out


async def post(
    http: aiohttp.ClientSession, path: str, body: Any, validation: str = "Strict"
) -> tuple[int, Any, list[str]]:
    async with http.post(path, json=body, params={"fieldValidation": validation}) as response:
        return (
            response.status,
            await response.json(content_type=None),
            response.headers.getall("Warning", []),
        )


async def test_unknown_fields_strict_warn_and_ignore(http: aiohttp.ClientSession) -> None:
    body = {"metadata": {"name": "a"}, "data": {"x": "y"}, "bogus": 1}
    code, answer, _ = await post(http, CONFIGMAPS, body)
    assert (code, answer["reason"]) == (400, "BadRequest")
    assert answer["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "bogus"'
    )

    bogus = deployment(spec__template__spec__containers__0__bogusField=True)
    code, answer, _ = await post(http, DEPLOYMENTS, bogus)
    assert code == 400
    assert answer["message"].endswith(
        'strict decoding error: unknown field "spec.template.spec.containers[0].bogusField"'
    )

    code, answer, warnings = await post(http, DEPLOYMENTS, bogus, "Warn")
    assert code == 201
    assert warnings == ['299 - "unknown field \\"spec.template.spec.containers[0].bogusField\\""']
    assert "bogusField" not in answer["spec"]["template"]["spec"]["containers"][0]

    code, answer, warnings = await post(http, CONFIGMAPS, body, "Ignore")
    assert (code, warnings, "bogus" in answer) == (201, [], False)


@pytest.mark.parametrize(
    ("body", "path", "wording"),
    [
        (
            deployment(spec__replicas="two"),
            DEPLOYMENTS,
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas "
            "of type int32",
        ),
        (
            deployment(spec__template__spec__containers__0__env=[{"name": "N", "value": 1}]),
            DEPLOYMENTS,
            "json: cannot unmarshal number into Go struct field "
            "EnvVar.spec.template.spec.containers.env.value of type string",
        ),
        (
            {"metadata": {"name": 5}},
            CONFIGMAPS,
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of "
            "type string",
        ),
        (
            {"metadata": {"name": "a", "labels": ["x"]}},
            CONFIGMAPS,
            "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of "
            "type map[string]string",
        ),
        (
            {"metadata": {"name": "a"}, "data": {"n": 1}},
            CONFIGMAPS,
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string",
        ),
        (
            deployment(spec__paused="yes"),
            DEPLOYMENTS,
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of "
            "type bool",
        ),
    ],
)
async def test_wrong_types_are_bad_requests_in_go_wording(
    http: aiohttp.ClientSession, body: Any, path: str, wording: str
) -> None:
    code, answer, _ = await post(http, path, body)
    assert (code, answer["reason"]) == (400, "BadRequest")
    kind = "Deployment" if path == DEPLOYMENTS else "ConfigMap"
    assert answer["message"] == (f'{kind} in version "v1" cannot be handled as a {kind}: {wording}')


SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    r"used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


@pytest.mark.parametrize(
    ("body", "path", "message", "fields"),
    [
        (
            {"metadata": {"name": "Bad_Name"}},
            CONFIGMAPS,
            f'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN}',
            ["metadata.name"],
        ),
        (
            deployment(
                spec__template__metadata={"labels": {"app": "x"}},
            ),
            DEPLOYMENTS,
            'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: '
            'map[string]string{"app":"x"}: `selector` does not match template `labels`',
            ["spec.template.metadata.labels"],
        ),
        (
            deployment(spec__selector=None),
            DEPLOYMENTS,
            'Deployment.apps "web" is invalid: [spec.selector: Required value, '
            "spec.template.metadata.labels: Invalid value: "
            'map[string]string{"app":"web"}: `selector` does not match template `labels`]',
            ["spec.selector", "spec.template.metadata.labels"],
        ),
        (
            deployment(spec__template__spec__containers=[]),
            DEPLOYMENTS,
            'Deployment.apps "web" is invalid: spec.template.spec.containers: Required value',
            ["spec.template.spec.containers"],
        ),
        (
            deployment(spec__template__spec__containers=[{"ports": [{"containerPort": 70000}]}]),
            DEPLOYMENTS,
            'Deployment.apps "web" is invalid: [spec.template.spec.containers[0].name: '
            "Required value, spec.template.spec.containers[0].image: Required value, "
            "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: "
            "must be between 1 and 65535, inclusive]",
            [
                "spec.template.spec.containers[0].name",
                "spec.template.spec.containers[0].image",
                "spec.template.spec.containers[0].ports[0].containerPort",
            ],
        ),
        (
            {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 0, "targetPort": 8080}]}},
            SERVICES,
            'Service "svc" is invalid: spec.ports[0].port: Invalid value: 0: must be between '
            "1 and 65535, inclusive",
            ["spec.ports[0].port"],
        ),
        (
            {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "web"}}},
            SERVICES,
            'Service "svc" is invalid: spec.ports: Required value',
            ["spec.ports"],
        ),
        (
            {
                "metadata": {"name": "web"},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                    },
                    "minReplicas": 3,
                    "maxReplicas": 2,
                },
            },
            HPAS,
            'HorizontalPodAutoscaler.autoscaling "web" is invalid: spec.maxReplicas: Invalid '
            "value: 2: must be greater than or equal to `minReplicas`",
            ["spec.maxReplicas"],
        ),
    ],
)
async def test_invalid_values_are_422_with_causes(
    http: aiohttp.ClientSession, body: Any, path: str, message: str, fields: list[str]
) -> None:
    code, answer, _ = await post(http, path, body)
    assert (code, answer["reason"]) == (422, "Invalid"), answer
    assert answer["message"] == message
    assert [cause["field"] for cause in answer["details"]["causes"]] == fields


async def test_service_names_are_dns_1035_labels(http: aiohttp.ClientSession) -> None:
    body = {"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}}
    code, answer, _ = await post(http, SERVICES, body)
    assert code == 422
    assert "a DNS-1035 label must consist of lower case alphanumeric" in answer["message"]


async def test_selector_is_immutable(http: aiohttp.ClientSession) -> None:
    assert (await post(http, DEPLOYMENTS, DEPLOYMENT))[0] == 201
    async with http.patch(
        f"{DEPLOYMENTS}/web",
        json={"spec": {"selector": {"matchLabels": {"app": "other"}}}},
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        answer = await response.json()
    assert response.status == 422
    # as a real server: the template no longer matches, and the selector may not change
    assert answer["message"].endswith(
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:"
        'map[string]string{"app":"other"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
        "field is immutable]"
    )


async def test_kubectl_apply_reports_the_servers_strict_decoding_error(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbogus: 1\n"
    result = await kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.code == 1
    assert (
        'Error from server (BadRequest): error when creating "STDIN": ConfigMap in version '
        '"v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogus"'
        in result.stderr
    )
    accepted = await kubectl("apply", "--validate=false", "-f", "-", stdin=manifest)
    assert "configmap/c created" in accepted.stdout


def test_listing_survives_names_of_other_types() -> None:
    """A name that is not a string (only possible below the API) does not break listing."""
    store = Store()
    store.register(registry.CONFIGMAPS)
    store.create(registry.CONFIGMAPS, {"metadata": {"name": 5, "namespace": "default"}})
    store.create(registry.CONFIGMAPS, {"metadata": {"name": "a", "namespace": "default"}})
    items, _ = store.list(registry.CONFIGMAPS, "default")
    assert [item["metadata"]["name"] for item in items] == [5, "a"]


async def test_defaults_like_a_real_server(http: aiohttp.ClientSession) -> None:
    body = deployment()
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "example/web"  # no tag: pulled Always
    container["readinessProbe"] = {"httpGet": {"port": 8080}}
    container["env"] = [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "c"}}]
    code, created, _ = await post(http, DEPLOYMENTS, body)
    assert code == 201
    spec = created["spec"]
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    pod = spec["template"]["spec"]
    assert {k: pod[k] for k in ("restartPolicy", "dnsPolicy", "schedulerName")} == {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
    }
    assert (pod["securityContext"], pod["terminationGracePeriodSeconds"]) == ({}, 30)
    assert pod["volumes"][0]["configMap"]["defaultMode"] == 420
    app = pod["containers"][0]
    assert app["imagePullPolicy"] == "Always"
    assert app["terminationMessagePath"] == "/dev/termination-log"
    assert app["terminationMessagePolicy"] == "File"
    assert app["readinessProbe"] == {
        "httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert app["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert created["metadata"]["generation"] == 1

    code, service, _ = await post(
        http, SERVICES, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert code == 201
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["sessionAffinity"] == "None"
    assert service["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert "generation" not in service["metadata"]

    code, hpa, _ = await post(
        http,
        HPAS,
        {
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 3,
            },
        },
    )
    assert code == 201
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80


async def test_generation_and_generated_names(http: aiohttp.ClientSession) -> None:
    code, created, _ = await post(http, CONFIGMAPS, {"metadata": {"generateName": "cfg-"}})
    assert code == 201
    assert re.fullmatch(r"cfg-[bcdfghjklmnpqrstvwxz2456789]{5}", created["metadata"]["name"])
    assert "generation" not in created["metadata"]  # ConfigMaps have none, as in 1.32
    code, answer, _ = await post(http, CONFIGMAPS, {"metadata": {"generateName": "Bad_"}})
    assert code == 422
    assert answer["details"]["causes"][0]["field"] == "metadata.generateName"


async def test_kubectl_get_events_k8s_io_prints_object_and_message(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "regarding": {"kind": "Canary", "name": "podinfo", "namespace": "default"},
        "note": "Advance podinfo.test canary weight 10",
        "reason": "Synced",
        "type": "Normal",
        "reportingController": "sluice",
        "reportingInstance": "sluice-0",
        "action": "Advance",
        "eventTime": "2026-01-01T00:00:00.000000Z",
    }
    await kubectl("create", "-f", "-", stdin=json.dumps(event))
    out = (await kubectl("get", "events.events.k8s.io", "-o", "wide")).stdout
    header, row = (" ".join(line.split()) for line in out.splitlines()[:2])
    assert header == ("LAST SEEN TYPE REASON OBJECT SUBOBJECT SOURCE MESSAGE FIRST SEEN COUNT NAME")
    assert (
        "Normal Synced canary/podinfo sluice, sluice-0 Advance podinfo.test canary weight 10" in row
    ), row
    assert row.endswith(" 1 e1")

"""deploy/kubernetes: the kustomize overlays render, validate, and grant only what the code uses.

Offline, no cluster: ``kubectl kustomize`` renders each overlay; every built-in object is
checked against the Kubernetes OpenAPI schemas shipped by ``kubernetes-validate`` (version
``KUBERNETES_VERSION``, strict: unknown fields fail); the CRDs in deploy/crds are checked as
apiextensions.k8s.io/v1 objects, and their OpenAPI schemas against the manifest corpus in
tests/data/manifests (with ``jsonschema``). The RBAC table below is derived from what each
service calls through libs/adapters/kubernetes.py; it must equal what the rendered
ClusterRoles grant. The NATS configuration of each overlay is checked with ``nats-server -t``.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from libs.model import documents

ROOT = Path(__file__).parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
CRD_DIR = ROOT / "deploy" / "crds"
MANIFESTS = ROOT / "tests" / "data" / "manifests"

# The Kubernetes version the manifests are validated against (kubectl on the build machines is
# 1.32; kubernetes-validate ships schemas for 1.25 .. 1.37).
KUBERNETES_VERSION = "1.32.0"

# Custom kinds kubernetes-validate has no schema for; checked by the tests below instead.
NOT_BUILTIN = {("monitoring.coreos.com/v1", "ServiceMonitor")}

IMAGE = "ghcr.io/sluice/sluice:0.1.0"
# Deployment name -> the module `python -m` runs
SERVICES = {
    "watcher": "watcher",
    "analyzer": "analyzer",
    "traffic-shifter": "traffic_shifter",
    "webhook-runner": "webhook_runner",
    "notifier": "notifier",
}
HEALTH_PORT = 8081

Obj = dict[str, Any]
Grant = tuple[str, str, str]  # (verb, apiGroup, resource)


def _grants(verbs: Iterable[str], group: str, resources: Iterable[str]) -> set[Grant]:
    return {(verb, group, resource) for verb in verbs for resource in resources}


# What each ServiceAccount may do, from the code:
# - watcher: informers (libs/adapters/informers.py) list then watch Canaries, MetricTemplates,
#   Deployments, ConfigMaps and Secrets (services/watcher/app.py); it writes nothing.
# - analyzer: get a Canary (controlling.py, state.py), patch its status subresource
#   (state.py patch_status), get the Secrets of MetricTemplate providers (state.py).
# - traffic-shifter: objects.Objects.ensure = get + create | update (replace) of the primary
#   Deployment, Services, primary HPA, canary ApisixRoute, -primary/-canary ApisixUpstreams
#   (upstreams.py), -primary ConfigMaps/Secrets; patch of
#   a Deployment's spec.replicas (workloads.py); get + patch of the Canary (finalizing.py,
#   objects.py); update canaries/finalizers because what it creates is owned by the Canary with
#   blockOwnerDeletion (the OwnerReferencesPermissionEnforcement admission plugin).
# - notifier: get the Canary, its AlertProviders and their Secrets (lookup.py); Events
#   created, read and patched (kubeevents.py).
# - webhook-runner: nothing (no token mounted).
EXPECTED_RBAC: dict[str, set[Grant]] = {
    "watcher": _grants(["list", "watch"], "flagger.app", ["canaries", "metrictemplates"])
    | _grants(["list", "watch"], "apps", ["deployments"])
    | _grants(["list", "watch"], "", ["configmaps", "secrets"]),
    "analyzer": _grants(["get"], "flagger.app", ["canaries"])
    | _grants(["patch"], "flagger.app", ["canaries/status"])
    | _grants(["get"], "", ["secrets"]),
    "traffic-shifter": _grants(["get", "patch"], "flagger.app", ["canaries"])
    | _grants(["update"], "flagger.app", ["canaries/finalizers"])
    | _grants(["get", "create", "update", "patch"], "apps", ["deployments"])
    | _grants(["get", "create", "update"], "", ["services", "configmaps", "secrets"])
    | _grants(["get", "create", "update"], "autoscaling", ["horizontalpodautoscalers"])
    | _grants(
        ["get", "create", "update"], "apisix.apache.org", ["apisixroutes", "apisixupstreams"]
    ),
    "notifier": _grants(["get"], "flagger.app", ["canaries", "alertproviders"])
    | _grants(["get"], "", ["secrets"])
    | _grants(["get", "create", "patch"], "", ["events"]),
    "webhook-runner": set(),
}


# ----------------------------------------------------------------------------- rendering


def _render(overlay: str) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; run `make setup`")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    objs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert objs, f"overlay {overlay} rendered nothing"
    return objs


@pytest.fixture(scope="module")
def dev() -> list[Obj]:
    return _render("dev")


@pytest.fixture(scope="module")
def ha() -> list[Obj]:
    return _render("ha")


def _of_kind(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def _one(objs: list[Obj], kind: str, name: str, namespace: str = "sluice") -> Obj:
    found = [
        o
        for o in objs
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and o["metadata"].get("namespace", "") == namespace
    ]
    assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} rendered"
    return found[0]


def _container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


# ----------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("overlay", ["dev", "ha"])
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    objs = _render(overlay)
    checked = 0
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        if key in NOT_BUILTIN:
            continue
        where = f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {where}: {exc.message} at {list(exc.path)}")
        checked += 1
    kinds = {o["kind"] for o in objs}
    assert {"CustomResourceDefinition", "Deployment", "StatefulSet", "ClusterRole"} <= kinds
    assert checked >= 30


def test_every_object_is_unique_and_namespaced_where_it_should_be(dev: list[Obj]) -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    seen = set()
    for obj in dev:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, obj["metadata"]["name"]
        else:
            assert namespace in {"sluice", "test"}, f"{obj['kind']} {obj['metadata']['name']}"
        key = (obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
        assert key not in seen, key
        seen.add(key)


def test_the_installed_crds_are_flaggers_three(dev: list[Obj]) -> None:
    crds = _of_kind(dev, "CustomResourceDefinition")
    # the ApisixRoute CRD belongs to the APISIX ingress controller's chart, not to Sluice
    assert sorted(crds) == [
        "alertproviders.flagger.app",
        "canaries.flagger.app",
        "metrictemplates.flagger.app",
    ]
    for name, crd in crds.items():
        on_disk = yaml.safe_load((CRD_DIR / f"{name}.yaml").read_text())
        assert crd == on_disk, f"{name} changed on the way through kustomize"


# --- the CRDs' OpenAPI schemas against the manifest corpus ------------------------------------


def _as_json_schema(schema: Obj) -> Obj:
    """An apiextensions OpenAPI v3 schema as the API server applies it, in JSON Schema terms:
    int-or-string nodes accept integers and strings; an object with declared properties and
    no x-kubernetes-preserve-unknown-fields rejects unknown fields, as the server's strict
    field validation does (kubectl's default since 1.27) instead of silently pruning them."""
    schema = copy.deepcopy(schema)

    def walk(node: Obj) -> None:
        if node.get("x-kubernetes-int-or-string"):
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            walk(child)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])
        if isinstance(node.get("items"), dict):
            walk(node["items"])

    walk(schema)
    return schema


def _installed_crds() -> dict[str, Obj]:
    """kind -> CRD, for the CRDs deploy/crds/kustomization.yml installs."""
    kustomization = yaml.safe_load((CRD_DIR / "kustomization.yml").read_text())
    result = {}
    for name in kustomization["resources"]:
        crd = yaml.safe_load((CRD_DIR / name).read_text())
        result[crd["spec"]["names"]["kind"]] = crd
    return result


def _crd_errors(doc: Obj, crd: Obj) -> list[str]:
    group = crd["spec"]["group"]
    served = [f"{group}/{v['name']}" for v in crd["spec"]["versions"] if v["served"]]
    if doc.get("apiVersion") not in served:
        return [f"apiVersion {doc.get('apiVersion')} is not served (only {served})"]
    version = next(
        v for v in crd["spec"]["versions"] if f"{group}/{v['name']}" == doc["apiVersion"]
    )
    validator = jsonschema.Draft7Validator(_as_json_schema(version["schema"]["openAPIV3Schema"]))
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


def _corpus_errors(path: Path, crds: dict[str, Obj]) -> tuple[int, list[str]]:
    checked, errors = 0, []
    for doc in documents.load_documents(path.read_text(), path.name):
        if doc.kind in crds and isinstance(doc.data, dict):
            checked += 1
            errors += [f"{doc.label}: {e}" for e in _crd_errors(doc.data, crds[doc.kind])]
    return checked, errors


VALID = sorted((MANIFESTS / "valid").glob("*.yaml")) + sorted(MANIFESTS.glob("podinfo-*.yaml"))

# Invalid corpus files whose problem the API server itself refuses, given the CRDs: enum,
# pattern, bounds, types, required fields, oneOf/anyOf of required fields, unknown fields
# (strict field validation), an apiVersion the CRD does not serve. fragment: in the errors.
STRUCTURAL = {
    "alert-provider-without-address.yaml": "spec: ",  # anyOf address / secretRef
    "bad-alert-provider-type.yaml": "spec.type: 'pagerduty' is not one of",
    "bad-alert-severity.yaml": "severity: 'critical' is not one of",
    "bad-autoscaler-kind.yaml": "autoscalerRef.kind: 'VerticalPodAutoscaler' is not one of",
    "bad-target-kind.yaml": "targetRef.kind: 'StatefulSet' is not one of",
    "bad-webhook-type.yaml": "type: 'pre-rollouts' is not one of",
    "interval-without-unit.yaml": "analysis.interval: '10' does not match",
    "many-problems.yaml": "'targetRef' is a required property",
    "metric-interval-hours.yaml": "interval: '1h' does not match",
    "missing-analysis.yaml": "spec: ",  # anyOf analysis / canaryAnalysis
    "missing-target-ref.yaml": "'targetRef' is a required property",
    "no-strategy.yaml": "spec.analysis: ",  # oneOf iterations / stepWeight / stepWeights
    "service-port-zero.yaml": "service.port: 0 is less than the minimum of 1",
    "step-weight-and-iterations.yaml": "spec.analysis: ",  # oneOf: two strategies
    "step-weight-over-100.yaml": "stepWeight: 110 is greater than the maximum of 100",
    "typo-threshold.yaml": "'treshold' was unexpected",
    "webhook-timeout-without-unit.yaml": "timeout: 5 is not of type 'string'",
    "wrong-api-version.yaml": "apiVersion flagger.app/v1alpha3 is not served",
}
# Invalid corpus files the CRDs accept: their problem is semantic (cross-field rules,
# references between objects, what APISIX or Sluice cannot do), so only `sluice validate` and
# the services catch it. Listed so that a new corpus file must be classified here.
SEMANTIC = {
    "apisix-without-route-ref.yaml",
    "autoscaler-scaled-object.yaml",
    "autoscaler-wrong-api-version.yaml",
    "match-two-operators.yaml",
    "metric-extension-typo.yaml",
    "metric-extension-values.yaml",
    "metric-without-threshold.yaml",
    "mirror-with-match.yaml",
    "missing-template-variable.yaml",
    "not-a-mapping.yaml",  # not an object at all: nothing to send to the server
    "relative-webhook-url.yaml",
    "route-without-apex-rule.yaml",
    "session-affinity-on-apisix.yaml",
    "step-weights-not-increasing.yaml",
    "template-unknown-variable.yaml",
    "threshold-range-inverted.yaml",
    "unknown-alert-provider.yaml",
    "unknown-metric.yaml",
    "unknown-template-ref.yaml",
}


def test_the_crds_are_valid_apiextensions_objects() -> None:
    for kind, crd in _installed_crds().items():
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        # a valid JSON Schema once translated (jsonschema's own metaschema)
        jsonschema.Draft7Validator.check_schema(_as_json_schema(schema))
        assert kind in {"Canary", "MetricTemplate", "AlertProvider"}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_the_crds_accept_the_valid_corpus(path: Path) -> None:
    _, errors = _corpus_errors(path, _installed_crds())
    assert errors == []


def test_the_valid_corpus_exercises_every_crd() -> None:
    crds = _installed_crds()
    kinds = set()
    for path in VALID:
        for doc in documents.load_documents(path.read_text(), path.name):
            kinds.add(doc.kind)
    assert set(crds) <= kinds


def test_every_invalid_corpus_file_is_classified() -> None:
    names = {p.name for p in (MANIFESTS / "invalid").glob("*.yaml")}
    assert not STRUCTURAL.keys() & SEMANTIC
    assert names == STRUCTURAL.keys() | SEMANTIC, "classify new files in STRUCTURAL or SEMANTIC"


@pytest.mark.parametrize(("name", "fragment"), sorted(STRUCTURAL.items()))
def test_the_crds_reject_the_structural_mistakes(name: str, fragment: str) -> None:
    checked, errors = _corpus_errors(MANIFESTS / "invalid" / name, _installed_crds())
    assert checked >= 1
    assert any(fragment in error for error in errors), errors


@pytest.mark.parametrize("name", sorted(SEMANTIC))
def test_the_crds_cannot_catch_the_semantic_mistakes(name: str) -> None:
    # documents what the CRDs do not do: these need `sluice validate`
    _, errors = _corpus_errors(MANIFESTS / "invalid" / name, _installed_crds())
    assert errors == []


# ----------------------------------------------------------------------------- RBAC


def _rbac_table(objs: list[Obj]) -> dict[str, set[Grant]]:
    """ServiceAccount (in namespace sluice) -> every (verb, apiGroup, resource) it is granted."""
    cluster_roles = _of_kind(objs, "ClusterRole")
    roles = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs if o["kind"] == "Role"
    }
    table: dict[str, set[Grant]] = {name: set() for name in _of_kind(objs, "ServiceAccount")}
    for binding in objs:
        if binding["kind"] not in {"ClusterRoleBinding", "RoleBinding"}:
            continue
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            role = cluster_roles[ref["name"]]
        else:
            role = roles[(binding["metadata"]["namespace"], ref["name"])]
        for subject in binding.get("subjects", []):
            assert subject["kind"] == "ServiceAccount", subject
            assert subject["namespace"] == "sluice", subject
            for rule in role.get("rules", []):
                assert "resourceNames" not in rule
                assert "nonResourceURLs" not in rule
                for field in ("verbs", "apiGroups", "resources"):
                    assert "*" not in rule[field], f"{role['metadata']['name']}: '*' in {field}"
                for group in rule["apiGroups"]:
                    table[subject["name"]] |= _grants(rule["verbs"], group, rule["resources"])
    return table


def test_rbac_is_exactly_what_the_code_uses(dev: list[Obj]) -> None:
    table = _rbac_table(dev)
    assert set(table) == set(EXPECTED_RBAC)
    for account, expected in EXPECTED_RBAC.items():
        granted = table[account]
        assert granted == expected, (
            f"{account}: extra {sorted(granted - expected)}, missing {sorted(expected - granted)}"
        )


def test_only_clusterroles_of_sluice_are_bound(dev: list[Obj]) -> None:
    for binding in _of_kind(dev, "ClusterRoleBinding").values():
        assert binding["roleRef"]["name"].startswith("sluice-")
    assert not _of_kind(dev, "RoleBinding")
    assert not _of_kind(dev, "Role")


def test_the_webhook_runner_has_no_kubernetes_access(dev: list[Obj]) -> None:
    account = _one(dev, "ServiceAccount", "webhook-runner")
    assert account["automountServiceAccountToken"] is False
    pod = _one(dev, "Deployment", "webhook-runner")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    for binding in dev:
        for subject in binding.get("subjects", []) if binding["kind"].endswith("Binding") else []:
            assert subject["name"] != "webhook-runner"


# ----------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("overlay", ["dev", "ha"])
def test_every_deployment_is_hardened_and_probed(overlay: str) -> None:
    objs = _render(overlay)
    deployments = _of_kind(objs, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        pod = template["spec"]
        container = _container(deployment)
        assert pod["serviceAccountName"] == name
        assert pod["enableServiceLinks"] is False, name  # else SLUICE_LOADTESTER_PORT=tcp://...
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["image"] == IMAGE
        assert container["args"] == [f"services.{SERVICES[name]}"]
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }, name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert ports.get(get["port"], get["port"]) == HEALTH_PORT, (name, probe)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SLUICE_HEALTH_HOST"] == "0.0.0.0"
        assert env["SLUICE_HEALTH_PORT"] == str(HEALTH_PORT)
        assert container["envFrom"] == [
            {"configMapRef": {"name": "sluice-settings"}},
            {"secretRef": {"name": "sluice-secrets", "optional": True}},
        ]
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (name, kind)
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(HEALTH_PORT)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_settings_point_at_the_bundled_nats(dev: list[Obj]) -> None:
    settings = _one(dev, "ConfigMap", "sluice-settings")["data"]
    assert settings["SLUICE_NATS_URL"] == "nats://nats.sluice:4222"
    assert settings["SLUICE_PROMETHEUS_URL"] == "http://prometheus.monitoring:9090"
    assert settings["SLUICE_STREAM_REPLICAS"] == "1"
    assert settings["SLUICE_LOG_FORMAT"] == "json"
    nats = _one(dev, "Service", "nats")
    assert {p["port"] for p in nats["spec"]["ports"]} >= {4222}


@pytest.mark.parametrize("overlay", ["dev", "ha"])
def test_every_service_selects_pods_and_named_ports(overlay: str) -> None:
    objs = _render(overlay)
    workloads = [o for o in objs if o["kind"] in {"Deployment", "StatefulSet"}]
    for service in _of_kind(objs, "Service").values():
        if service["spec"].get("type") == "ExternalName":
            continue
        selector = service["spec"]["selector"]
        namespace = service["metadata"]["namespace"]
        matches = [
            w
            for w in workloads
            if w["metadata"]["namespace"] == namespace
            and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, f"Service {service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in matches:
                names = {
                    p.get("name"): p["containerPort"]
                    for c in workload["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                assert target in names or target in names.values(), (
                    service["metadata"]["name"],
                    target,
                )


def test_the_loadtester_service(dev: list[Obj]) -> None:
    service = _one(dev, "Service", "sluice-loadtester")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "loadtester", "protocol": "TCP"}
    ]
    runner = _container(_one(dev, "Deployment", "webhook-runner"))
    env = {e["name"]: e.get("value") for e in runner["env"]}
    ports = {p["name"]: p["containerPort"] for p in runner["ports"]}
    assert ports["loadtester"] == int(env["SLUICE_LOADTESTER_PORT"])
    assert env["SLUICE_LOADTESTER_HOST"] == "0.0.0.0"
    for name in SERVICES:
        metrics = _one(dev, "Service", f"{name}-metrics")
        assert [(p["name"], p["port"]) for p in metrics["spec"]["ports"]] == [
            ("metrics", HEALTH_PORT)
        ]


# ----------------------------------------------------------------------------- overlays


def test_dev_aliases_flagger_loadtester_and_runs_one_nats(dev: list[Obj]) -> None:
    _one(dev, "Namespace", "test", namespace="")
    alias = _one(dev, "Service", "flagger-loadtester", namespace="test")
    assert alias["spec"]["type"] == "ExternalName"
    assert alias["spec"]["externalName"] == "sluice-loadtester.sluice.svc.cluster.local"
    for deployment in _of_kind(dev, "Deployment").values():
        assert deployment["spec"]["replicas"] == 1
    nats = _one(dev, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 1
    conf = _one(dev, "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "jetstream" in conf
    assert "cluster" not in conf
    assert "routes" not in conf
    assert not _of_kind(dev, "PodDisruptionBudget")
    assert not _of_kind(dev, "ServiceMonitor")


def test_ha_replicas_budgets_and_spread(ha: list[Obj]) -> None:
    deployments = _of_kind(ha, "Deployment")
    replicas = {name: d["spec"]["replicas"] for name, d in deployments.items()}
    assert replicas == {name: 3 if name == "analyzer" else 2 for name in SERVICES}
    budgets = _of_kind(ha, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b
            for b in budgets.values()
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, name
        budget = covering[0]["spec"]
        assert budget.get("maxUnavailable") == 1 or budget.get("minAvailable") == 1
        [spread] = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
        assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    assert "nats" in budgets


def test_ha_nats_is_a_three_node_jetstream_cluster(ha: list[Obj]) -> None:
    settings = _one(ha, "ConfigMap", "sluice-settings")["data"]
    assert settings["SLUICE_STREAM_REPLICAS"] == "3"
    nats = _one(ha, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["serviceName"] == "nats-headless"
    [claim] = nats["spec"]["volumeClaimTemplates"]
    [container] = nats["spec"]["template"]["spec"]["containers"]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[
        claim["metadata"]["name"]
    ] == "/data"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"].startswith("/healthz")
    headless = _one(ha, "Service", "nats-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert 6222 in {p["port"] for p in headless["spec"]["ports"]}
    conf = _one(ha, "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "store_dir: /data" in conf
    for i in range(3):
        assert f"nats://nats-{i}.nats-headless.sluice.svc.cluster.local:6222" in conf


def test_ha_adds_a_servicemonitor_per_service(ha: list[Obj]) -> None:
    monitors = _of_kind(ha, "ServiceMonitor")
    assert set(monitors) == set(SERVICES)
    services = _of_kind(ha, "Service")
    for name, monitor in monitors.items():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [
            s
            for s in services.values()
            if selector.items() <= s["metadata"].get("labels", {}).items()
            and any(p["name"] == "metrics" for p in s["spec"]["ports"])
        ]
        assert [s["metadata"]["name"] for s in selected] == [f"{name}-metrics"]
        assert monitor["spec"]["endpoints"] == [
            {"port": "metrics", "path": "/metrics", "interval": "30s"}
        ]


@pytest.mark.parametrize("overlay", ["dev", "ha"])
def test_nats_conf_is_accepted_by_nats_server(overlay: str, tmp_path: Path) -> None:
    server = shutil.which("nats-server") or shutil.which(
        "nats-server", path=str(Path(sys.executable).parent)
    )
    if server is None:
        pytest.skip("nats-server is not installed; run `make setup`")
    data = _one(_render(overlay), "ConfigMap", "nats-config")["data"]
    for key in ("nats.conf", "authorization.conf", "tls.conf"):  # side by side in /etc/nats
        (tmp_path / key).write_text(data[key])
    passwords = {variable: "x" for variable in _nats_password_variables(_render(overlay))}
    done = subprocess.run(
        [server, "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "POD_NAME": "nats-0", **passwords},
    )
    assert done.returncode == 0, done.stderr + done.stdout


# ----------------------------------------------------------------------------- NATS users

SHIPPED_AUTHORIZATION = ROOT / "deploy" / "nats" / "authorization.conf"


def _nats_password_variables(objs: list[Obj]) -> dict[str, str]:
    """The NATS pods' password variables -> the key of the Secret sluice-nats-users."""
    [container] = _one(objs, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"]
    found = {}
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == "sluice-nats-users", env
            found[env["name"]] = ref["key"]
    return found


@pytest.mark.parametrize("overlay", ["dev", "ha"])
def test_nats_runs_the_shipped_authorization_with_every_password_from_the_secret(
    overlay: str,
) -> None:
    objs = _render(overlay)
    data = _one(objs, "ConfigMap", "nats-config")["data"]
    assert data["authorization.conf"] == SHIPPED_AUTHORIZATION.read_text()
    assert 'include "authorization.conf"' in data["nats.conf"]
    variables = _nats_password_variables(objs)
    shipped = SHIPPED_AUTHORIZATION.read_text()
    users = [line.split(":", 1)[1].strip() for line in shipped.splitlines()
             if line.strip().startswith("user:")]  # fmt: skip
    assert variables == {f"SLUICE_{u.upper().replace('-', '_')}_PASSWORD": u for u in users}
    for variable in variables:
        assert f"${variable}\n" in shipped


@pytest.mark.parametrize("overlay", ["dev", "ha"])
def test_each_service_connects_as_its_own_nats_user_seeing_only_its_password(
    overlay: str,
) -> None:
    objs = _render(overlay)
    for name, deployment in _of_kind(objs, "Deployment").items():
        if name not in SERVICES:
            continue
        container = _container(deployment)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SLUICE_NATS_USER"] == name
        assert f"user: {name}\n" in SHIPPED_AUTHORIZATION.read_text()
        path = PurePosixPath(env["SLUICE_NATS_PASSWORD_FILE"])
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "nats-password"]
        assert (mount["mountPath"], mount.get("readOnly")) == (str(path.parent), True)
        [volume] = [
            v for v in deployment["spec"]["template"]["spec"]["volumes"]
            if v["name"] == "nats-password"
        ]  # fmt: skip
        assert volume["secret"]["secretName"] == "sluice-nats-users"
        assert volume["secret"]["items"] == [{"key": name, "path": path.name}]


# ----------------------------------------------------------------------------- TLS


def _render_with_tls(tmp_path: Path, overlay: str) -> list[Obj]:
    """``overlay`` with components/nats-tls added, as a user's own overlay would add it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; run `make setup`")
    mine = tmp_path / "overlay"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(KUSTOMIZE / "overlays" / overlay, mine)],
                "components": [os.path.relpath(KUSTOMIZE / "components" / "nats-tls", mine)],
            }
        )
    )
    done = subprocess.run(
        [kubectl, "kustomize", str(mine)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize("overlay", ["dev", "ha"])
def test_the_tls_component_serves_the_shipped_tls_conf_and_services_trust_its_ca(
    overlay: str, tmp_path: Path
) -> None:
    objs = _render_with_tls(tmp_path, overlay)
    data = _one(objs, "ConfigMap", "nats-config")["data"]
    assert data["tls.conf"] == (ROOT / "deploy" / "nats" / "tls.conf").read_text()
    assert 'include "tls.conf"' in data["nats.conf"]
    nats = _one(objs, "StatefulSet", "nats")["spec"]["template"]["spec"]
    [container] = nats["containers"]
    assert {"name": "tls", "mountPath": "/etc/nats/tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "tls", "secret": {"secretName": "nats-tls"}} in nats["volumes"]
    settings = _one(objs, "ConfigMap", "sluice-settings")["data"]
    assert settings["SLUICE_NATS_URL"] == "tls://nats.sluice:4222"
    ca = PurePosixPath(settings["SLUICE_NATS_TLS_CA_FILE"])
    deployments = {n: d for n, d in _of_kind(objs, "Deployment").items() if n in SERVICES}
    assert set(deployments) == set(SERVICES)
    for deployment in deployments.values():
        [mount] = [m for m in _container(deployment)["volumeMounts"] if m["name"] == "nats-ca"]
        assert mount["mountPath"] == str(ca.parent)
        [volume] = [
            v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "nats-ca"
        ]
        assert volume["secret"] == {
            "secretName": "nats-tls",
            "items": [{"key": "ca.crt", "path": ca.name}],
        }


def test_the_shipped_tls_conf_is_accepted_by_nats_server(tmp_path: Path) -> None:
    from tests.fixtures import secured_nats

    server = shutil.which("nats-server") or shutil.which(
        "nats-server", path=str(Path(sys.executable).parent)
    )
    if server is None:
        pytest.skip("nats-server is not installed; run `make setup`")
    pki = secured_nats.Pki(tmp_path / "pki")
    conf = (ROOT / "deploy" / "nats" / "tls.conf").read_text()
    for shipped, mine in (
        ("tls.crt", "server.crt"),
        ("tls.key", "server.key"),
        ("ca.crt", "ca.crt"),
    ):
        conf = conf.replace(f"/etc/nats/tls/{shipped}", pki.path(mine))
    (tmp_path / "tls.conf").write_text(conf)
    (tmp_path / "nats.conf").write_text('port: 4222\ninclude "tls.conf"\n')
    done = subprocess.run(
        [server, "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout

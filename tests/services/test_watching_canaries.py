"""The watcher as a real process, for what the analyzer reads instead of Kubernetes: the Canary
itself (``sluice_canaries``), its primary Deployment (``sluice_workloads``) and MetricTemplates
(``sluice_templates``). The cluster is the sandbox's API simulator; status writes go through the
real kubectl, as ``kubectl patch --subresource=status``."""

from __future__ import annotations

import asyncio
import copy
import os
import pathlib
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
import msgspec
import nats
import pytest
import yaml
from nats.aio.client import Client
from nats.js.kv import KeyValue

from libs import messages, streams
from sandbox.kube.cluster import Cluster
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory, secret
from tests.services.test_watching import (
    CANARIES,
    DEADLINE_S,
    DEPLOYMENTS,
    SUBJECT,
    Api,
    cluster_settings,
    manifest,
    start_watcher,
    until,
)

pytestmark = pytest.mark.integration

TEMPLATES = "/apis/flagger.app/v1beta1/namespaces/test/metrictemplates"
SECRETS = "/api/v1/namespaces/test/secrets"
SLUICE = str(pathlib.Path(sys.executable).parent / "sluice")
T = TypeVar("T")


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(cluster_settings()) as running:
        yield running


class KubeApi(Api):
    async def delete(self, path: str) -> None:
        async with self.session.delete(
            self.base + path, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            assert resp.status < 300, f"DELETE {path}: {resp.status} {await resp.text()}"

    async def get(self, path: str) -> Any:
        async with self.session.get(
            self.base + path, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            assert resp.status == 200, f"GET {path}: {resp.status} {await resp.text()}"
            return await resp.json()


@pytest.fixture
async def api(cluster: Cluster, http: aiohttp.ClientSession) -> KubeApi:
    return KubeApi(http, cluster.url)


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


async def run(
    binary: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run a program to its end (within 30 s): exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        binary,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


async def kubectl(cluster: Cluster, tmp_path: pathlib.Path, *args: str) -> str:
    """The real kubectl against the simulator; its stdout."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not on PATH: install it with `make setup`")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(cluster.write_kubeconfig(tmp_path / "kubectl-config")),
        "KUBECACHEDIR": str(tmp_path / "kubecache"),
    }
    code, out, err = await run(binary, *args, env=env)
    assert code == 0, f"kubectl {' '.join(args)}: {err}"
    return out


async def stored(kv: KeyValue, key: str, decoder: msgspec.json.Decoder[T]) -> T | None:
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    return decoder.decode(entry.value or b"")


async def raw(kv: KeyValue, key: str) -> bytes:
    return (await kv.get(key)).value or b""


async def absent(kv: KeyValue, key: str) -> bool:
    try:
        await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return True
    return False


def canary_observation(
    kv: KeyValue, name: str, check: Callable[[messages.CanaryObservation], bool] = lambda _: True
) -> Callable[[], Any]:
    async def probe() -> messages.CanaryObservation | None:
        current = await stored(kv, f"test.{name}", messages.CANARY_OBSERVATION_DECODER)
        return current if current is not None and check(current) else None

    return probe


def template_observation(
    kv: KeyValue,
    name: str,
    check: Callable[[messages.TemplateObservation], bool] = lambda _: True,
) -> Callable[[], Any]:
    async def probe() -> messages.TemplateObservation | None:
        current = await stored(kv, f"test.{name}", messages.TEMPLATE_OBSERVATION_DECODER)
        return current if current is not None and check(current) else None

    return probe


def workload_observation(
    kv: KeyValue, name: str, check: Callable[[messages.WorkloadObservation], bool]
) -> Callable[[], Any]:
    async def probe() -> messages.WorkloadObservation | None:
        current = await stored(kv, f"test.{name}", messages.OBSERVATION_DECODER)
        return current if current is not None and check(current) else None

    return probe


async def next_revision(sub: Any) -> messages.RevisionDetected:
    msg = await sub.next_msg(timeout=DEADLINE_S)
    event = messages.EVENT_DECODER.decode(msg.data)
    assert isinstance(event, messages.RevisionDetected)
    return event


async def test_the_canary_is_observed_with_spec_status_and_identity(
    nats_server: NatsServer,
    cluster: Cluster,
    api: KubeApi,
    bus: Client,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    proc = start_watcher(service, nats_server, cluster, tmp_path)
    await proc.ready()
    js = bus.jetstream()
    canaries = await js.key_value(streams.CANARIES.name)
    workloads = await js.key_value(streams.WORKLOADS.name)
    events = await js.subscribe(SUBJECT, ordered_consumer=True)

    await api.create(DEPLOYMENTS, manifest("podinfo-deployment.yaml"))
    created = await api.create(CANARIES, manifest("podinfo-canary.yaml"))
    # a new canary still announces its first revision, and by then its observation is stored
    first = await next_revision(events)
    assert first.target == "podinfo"
    observed = await stored(canaries, "test.podinfo", messages.CANARY_OBSERVATION_DECODER)
    assert observed is not None
    assert (observed.namespace, observed.name) == ("test", "podinfo")
    assert observed.uid == created["metadata"]["uid"]
    assert observed.resource_version == created["metadata"]["resourceVersion"]
    assert observed.generation == created["metadata"]["generation"] == 1
    assert observed.problems == []
    assert observed.canary is not None
    spec = observed.canary.spec
    assert spec.target_ref.name == "podinfo"
    assert spec.route_ref is not None
    assert spec.route_ref.name == "podinfo"
    analysis = observed.canary.get_analysis()
    assert (analysis.interval, analysis.threshold, analysis.step_weight) == ("10s", 10, 10)
    assert [m.name for m in analysis.metrics] == ["request-success-rate", "request-duration"]
    # on the wire it is the Kubernetes object, camelCase, without the server's bookkeeping
    wire = msgspec.json.decode(await raw(canaries, "test.podinfo"))
    assert wire["canary"]["spec"]["targetRef"]["name"] == "podinfo"
    assert wire["canary"]["spec"]["analysis"]["stepWeight"] == 10
    assert "managedFields" not in wire["canary"]["metadata"]

    # a status write through the status subresource (as the analyzer will make it)
    status = {
        "phase": "Progressing",
        "canaryWeight": 10,
        "failedChecks": 0,
        "iterations": 0,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "conditions": [
            {
                "type": "Promoted",
                "status": "Unknown",
                "reason": "Progressing",
                "message": "New revision detected, progressing canary analysis.",
                "lastUpdateTime": "2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    await kubectl(
        cluster,
        tmp_path,
        "patch",
        "canary",
        "podinfo",
        "-n",
        "test",
        "--subresource=status",
        "--type=merge",
        "-p",
        msgspec.json.encode({"status": status}).decode(),
    )
    progressing = await until(
        "status in the observation",
        canary_observation(
            canaries,
            "podinfo",
            lambda o: (
                o.canary is not None
                and o.canary.status is not None
                and o.canary.status.phase == messages.Phase.PROGRESSING
            ),
        ),
        proc,
    )
    current = await api.get(f"{CANARIES}/podinfo")
    assert progressing.resource_version == current["metadata"]["resourceVersion"]
    assert progressing.resource_version != observed.resource_version
    assert progressing.generation == 1  # a status write is not a new generation
    assert progressing.canary.status.canary_weight == 10
    assert progressing.canary.status.conditions[0].reason == "Progressing"

    # a spec change: a new generation, the new spec
    await api.patch(f"{CANARIES}/podinfo", {"spec": {"analysis": {"threshold": 5}}})
    changed = await until(
        "spec change in the observation",
        canary_observation(canaries, "podinfo", lambda o: o.generation == 2),
        proc,
    )
    assert changed.canary is not None
    assert changed.canary.get_analysis().threshold == 5
    assert changed.canary.status is not None  # the status is still there

    # an invalid canary is recorded with the problems `sluice validate` prints, and no model
    bad = manifest("podinfo-canary.yaml")
    bad["metadata"]["name"] = "broken"
    del bad["spec"]["analysis"]["stepWeight"]
    bad["spec"]["analysis"]["stepWeights"] = [30, 10]
    bad_created = await api.create(CANARIES, bad)
    broken = await until("invalid canary", canary_observation(canaries, "broken"), proc)
    assert broken.canary is None
    assert broken.uid == bad_created["metadata"]["uid"]
    assert broken.resource_version == bad_created["metadata"]["resourceVersion"]
    code, printed, _ = await run(SLUICE, "validate", "-f", "-", stdin=yaml.safe_dump(bad))
    assert code == 1
    assert broken.problems == printed.splitlines()
    assert any("spec.analysis.stepWeights[1]" in line for line in broken.problems)
    await proc.wait_metric("sluice_watcher_invalid_canaries_total", lambda v: v == 1)

    # neither status nor spec writes were revisions
    with pytest.raises(nats.errors.TimeoutError):
        await events.next_msg(timeout=0.5)
    await events.unsubscribe()

    # deleting a canary deletes its observation (and its target's, as before)
    await api.delete(f"{CANARIES}/podinfo")
    await until("canary observation deleted", lambda: absent(canaries, "test.podinfo"), proc)
    await until("workload observation deleted", lambda: absent(workloads, "test.podinfo"), proc)
    await api.delete(f"{CANARIES}/broken")
    await until("invalid canary deleted", lambda: absent(canaries, "test.broken"), proc)
    assert proc.terminate() == 0


async def test_the_primary_is_observed_without_revision_events(
    nats_server: NatsServer,
    cluster: Cluster,
    api: KubeApi,
    bus: Client,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    proc = start_watcher(service, nats_server, cluster, tmp_path)
    await proc.ready()
    js = bus.jetstream()
    workloads = await js.key_value(streams.WORKLOADS.name)
    events = await js.subscribe(SUBJECT, ordered_consumer=True)

    deployment = manifest("podinfo-deployment.yaml")
    await api.create(DEPLOYMENTS, deployment)
    await api.create(CANARIES, manifest("podinfo-canary.yaml"))
    first = await next_revision(events)
    assert await absent(workloads, "test.podinfo-primary")

    # the traffic-shifter makes the primary; the watcher observes its readiness
    primary = copy.deepcopy(deployment)
    primary["metadata"] = {"name": "podinfo-primary", "labels": {"app": "podinfo-primary"}}
    primary["spec"]["selector"] = {"matchLabels": {"app": "podinfo-primary"}}
    primary["spec"]["template"]["metadata"]["labels"] = {"app": "podinfo-primary"}
    await api.create(DEPLOYMENTS, primary)
    ready = await until(
        "primary observation",
        workload_observation(workloads, "podinfo-primary", lambda o: o.ready_replicas >= 1),
        proc,
    )
    assert (ready.namespace, ready.name) == ("test", "podinfo-primary")

    # promotion copies a new template to the primary: observed, but not a revision
    containers = copy.deepcopy(primary["spec"]["template"]["spec"]["containers"])
    containers[0]["image"] = "ghcr.io/stefanprodan/podinfo:6.0.1"
    await api.patch(
        f"{DEPLOYMENTS}/podinfo-primary",
        {"spec": {"template": {"spec": {"containers": containers}}}},
    )
    promoted = await until(
        "promoted primary",
        workload_observation(workloads, "podinfo-primary", lambda o: o.revision != ready.revision),
        proc,
    )
    await api.patch(f"{DEPLOYMENTS}/podinfo-primary", {"spec": {"replicas": 2}})
    await until(
        "scaled primary",
        workload_observation(workloads, "podinfo-primary", lambda o: o.replicas == 2),
        proc,
    )
    # the next event is the target's next revision: nothing was published for the primary
    target_containers = copy.deepcopy(deployment["spec"]["template"]["spec"]["containers"])
    target_containers[0]["image"] = "ghcr.io/stefanprodan/podinfo:6.0.2"
    await api.patch(
        f"{DEPLOYMENTS}/podinfo",
        {"spec": {"template": {"spec": {"containers": target_containers}}}},
    )
    second = await next_revision(events)
    assert second.target == "podinfo"
    assert second.revision not in (first.revision, promoted.revision)
    with pytest.raises(nats.errors.TimeoutError):
        await events.next_msg(timeout=0.5)
    await events.unsubscribe()

    # the primary goes away: so does its observation; the target's stays
    await api.delete(f"{DEPLOYMENTS}/podinfo-primary")
    await until("primary forgotten", lambda: absent(workloads, "test.podinfo-primary"), proc)
    assert not await absent(workloads, "test.podinfo")
    assert proc.terminate() == 0


def template(name: str, query: str, **provider: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": name, "namespace": "test"},
        "spec": {
            "provider": {"type": "prometheus", "address": "http://prometheus:9090", **provider},
            "query": query,
        },
    }


async def test_metric_templates_are_observed_and_forgotten(
    nats_server: NatsServer,
    cluster: Cluster,
    api: KubeApi,
    bus: Client,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    token = secret("template-token-9f6c1d2e")
    await api.create(SECRETS, {"metadata": {"name": "prom-auth"}, "stringData": {"token": token}})
    proc = start_watcher(service, nats_server, cluster, tmp_path)
    await proc.ready()
    js = bus.jetstream()
    templates = await js.key_value(streams.TEMPLATES.name)
    canaries = await js.key_value(streams.CANARIES.name)

    query = 'sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}.+"}[{{ interval }}]))'
    created = await api.create(
        TEMPLATES, template("error-rate", query, secretRef={"name": "prom-auth"})
    )
    observed = await until("template", template_observation(templates, "error-rate"), proc)
    assert observed.uid == created["metadata"]["uid"]
    assert observed.resource_version == created["metadata"]["resourceVersion"]
    assert observed.problems == []
    assert observed.template is not None
    assert observed.template.spec.query == query
    provider = observed.template.spec.provider
    assert provider.secret_ref is not None
    assert provider.secret_ref.name == "prom-auth"
    assert token.encode() not in await raw(templates, "test.error-rate")

    # a change is recorded
    await api.patch(f"{TEMPLATES}/error-rate", {"spec": {"query": query + " * 100"}})
    await until(
        "changed template",
        template_observation(
            templates,
            "error-rate",
            lambda o: o.template is not None and o.template.spec.query.endswith("* 100"),
        ),
        proc,
    )

    # an invalid template is recorded with its problems
    await api.create(TEMPLATES, template("typo", "sum(up{job={{ nope }}})"))
    typo = await until("invalid template", template_observation(templates, "typo"), proc)
    assert typo.template is None
    assert len(typo.problems) == 1
    assert typo.problems[0].startswith("typo (MetricTemplate, test): spec.query: ")
    await proc.wait_metric("sluice_watcher_invalid_templates_total", lambda v: v == 1)

    # a name Kubernetes allows but a KV key cannot hold: said once, not retried in a loop
    await api.create(TEMPLATES, template("latency.v2", query))
    await proc.wait_log(r"MetricTemplate latency\.v2\.test is not observed: name 'latency\.v2'")
    assert "Traceback" not in proc.log_text()

    # deleted: forgotten
    await api.delete(f"{TEMPLATES}/typo")
    await until("invalid template deleted", lambda: absent(templates, "test.typo"), proc)

    # deleted while no watcher runs: forgotten at the next start (canaries too)
    await api.create(DEPLOYMENTS, manifest("podinfo-deployment.yaml"))
    await api.create(CANARIES, manifest("podinfo-canary.yaml"))
    await until("canary", canary_observation(canaries, "podinfo"), proc)
    assert proc.terminate() == 0
    await api.delete(f"{TEMPLATES}/error-rate")
    await api.delete(f"{CANARIES}/podinfo")
    again = start_watcher(service, nats_server, cluster, tmp_path)
    await again.ready()
    await until("stale template forgotten", lambda: absent(templates, "test.error-rate"), again)
    await until("stale canary forgotten", lambda: absent(canaries, "test.podinfo"), again)
    assert again.terminate() == 0


async def test_a_canary_held_by_a_finalizer_stays_observed_until_it_is_gone(
    nats_server: NatsServer,
    cluster: Cluster,
    api: KubeApi,
    bus: Client,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    proc = start_watcher(service, nats_server, cluster, tmp_path)
    await proc.ready()
    js = bus.jetstream()
    canaries = await js.key_value(streams.CANARIES.name)
    workloads = await js.key_value(streams.WORKLOADS.name)
    await api.create(DEPLOYMENTS, manifest("podinfo-deployment.yaml"))
    held = manifest("podinfo-canary.yaml")
    held["metadata"]["finalizers"] = ["finalizer.flagger.app", "example.com/other"]
    held["spec"]["revertOnDeletion"] = True
    await api.create(CANARIES, held)
    first = await until("canary", canary_observation(canaries, "podinfo"), proc)
    assert first.canary is not None
    assert first.canary.metadata.finalizers == ("finalizer.flagger.app", "example.com/other")
    assert first.canary.metadata.deletion_timestamp is None
    assert first.canary.spec.revert_on_deletion is True

    # deleted: still there, marked; the observation says so (what the analyzer acts on)
    await api.delete(f"{CANARIES}/podinfo")
    marked = await until(
        "deletion in the observation",
        canary_observation(
            canaries,
            "podinfo",
            lambda o: o.canary is not None and o.canary.metadata.deletion_timestamp is not None,
        ),
        proc,
    )
    current = await api.get(f"{CANARIES}/podinfo")
    assert marked.canary is not None
    assert marked.canary.metadata.deletion_timestamp == current["metadata"]["deletionTimestamp"]
    assert marked.resource_version == current["metadata"]["resourceVersion"]

    # status writes while it is deleted keep being observed
    await kubectl(
        cluster,
        tmp_path,
        "patch",
        "canary",
        "podinfo",
        "-n",
        "test",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Terminating"}}',
    )
    await until(
        "status of a deleted canary",
        canary_observation(
            canaries,
            "podinfo",
            lambda o: (
                o.canary is not None
                and o.canary.status is not None
                and o.canary.status.phase == messages.Phase.TERMINATING
                and o.canary.metadata.deletion_timestamp is not None
            ),
        ),
        proc,
    )
    assert not await absent(workloads, "test.podinfo")

    # one finalizer removed: still observed, with the one left; the last removed: forgotten
    await api.patch(f"{CANARIES}/podinfo", {"metadata": {"finalizers": ["example.com/other"]}})
    await until(
        "one finalizer left",
        canary_observation(
            canaries,
            "podinfo",
            lambda o: (
                o.canary is not None and o.canary.metadata.finalizers == ("example.com/other",)
            ),
        ),
        proc,
    )
    await api.patch(f"{CANARIES}/podinfo", {"metadata": {"finalizers": None}})
    await until("canary observation deleted", lambda: absent(canaries, "test.podinfo"), proc)
    await until("workload observation deleted", lambda: absent(workloads, "test.podinfo"), proc)
    assert proc.terminate() == 0

"""Shared by the rollout end-to-end tests: the tutorial's objects in a namespace of their own,
the five services as processes against one sandbox stack, a plain subscriber recording what
integrations see, and polling the Canary's status through the real kubectl."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Callable
from typing import Any

import jsonschema
import yaml
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.sandbox.e2e import support

REPO = pathlib.Path(__file__).resolve().parents[3]
EVENT_SCHEMA = json.loads((REPO / "docs" / "events" / "event.schema.json").read_text())
SERVICES = ("watcher", "analyzer", "traffic_shifter", "webhook_runner", "notifier")


Docs = list[dict[str, Any]]  # Namespace, Deployment, ApisixRoute, Canary


def manifests(
    namespace: str,
    edit: Callable[[Docs], None] | None = None,
    analysis_changes: dict[str, Any] | None = None,
    **canary_spec: Any,
) -> str:
    """The tutorial's objects in ``namespace``, on host ``<namespace>.example.com``, with a 1 s
    analysis interval (the loadtester stays flagger-loadtester.test). ``canary_spec`` updates
    the Canary's spec, ``analysis_changes`` its analysis; ``edit`` may change any document last."""
    host = f"{namespace}.example.com"
    deployment, route, canary = (
        yaml.safe_load((support.MANIFESTS / name).read_text())
        for name in ("podinfo-deployment.yaml", "podinfo-apisixroute.yaml", "podinfo-canary.yaml")
    )
    for obj in (deployment, route, canary):
        obj["metadata"]["namespace"] = namespace
    route["spec"]["http"][0]["match"]["hosts"] = [host]
    analysis = canary["spec"]["analysis"]
    analysis["interval"] = "1s"
    for hook in analysis["webhooks"]:
        hook["metadata"]["cmd"] = hook["metadata"]["cmd"].replace("app.example.com", host)
    analysis.update(analysis_changes or {})
    canary["spec"].update(canary_spec)
    namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    docs = [namespace_obj, deployment, route, canary]
    if edit is not None:
        edit(docs)
    return yaml.safe_dump_all(docs)


async def start(
    stack: support.Stack, service: ServiceFactory, analyzers: int = 1
) -> dict[str, list[ServiceProcess]]:
    env = {
        "SLUICE_KUBECONFIG": stack.env["KUBECONFIG"],
        "SLUICE_PROMETHEUS_URL": stack.env["PROMETHEUS_URL"],
        "SLUICE_LOADTESTER_PORT": stack.env["LOADTESTER_PORT"],
        "SLUICE_MIN_INTERVAL_S": "1",
        "HTTP_PROXY": stack.env["HTTP_PROXY"],
        "NO_PROXY": stack.env["NO_PROXY"],
    }
    procs = {
        name: [
            service(name, stack.env["NATS_URL"], **env)
            for _ in range(analyzers if name == "analyzer" else 1)
        ]
        for name in SERVICES
    }
    await asyncio.gather(*(p.ready() for group in procs.values() for p in group))
    return procs


class Recorder:
    """A plain nats-py subscriber on sluice.events.<namespace>.>: what integrations see."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def handle(self, msg: Any) -> None:
        self.events.append(json.loads(msg.data))

    def messages(self, kind: str) -> list[str]:
        return [e["message"] for e in self.events if e["kind"] == kind]

    def weights(self) -> list[int]:
        return [
            e["canary_weight"]
            for e in self.events
            if e["kind"] == "weight_advanced"
            and e["message"].startswith("Advance")
            and "canary weight" in e["message"]
        ]


async def record(nc: Client, namespace: str) -> Recorder:
    recorder = Recorder()
    await nc.subscribe(f"sluice.events.{namespace}.>", cb=recorder.handle)
    return recorder


async def phase(stack: support.Stack, namespace: str) -> dict[str, Any]:
    out = await stack.kubectl(
        "get", "canary", "podinfo", "-n", namespace, "-o", "json", check=False
    )
    return dict(json.loads(out.stdout).get("status") or {}) if out.code == 0 else {}


async def wait_for(
    stack: support.Stack, namespace: str, check: Any, what: str, timeout: float = 120
) -> dict[str, Any]:
    return await support.poll(
        lambda: phase(stack, namespace), check, timeout=timeout, what=what, interval=0.3
    )


async def initialized(
    stack: support.Stack,
    namespace: str,
    edit: Callable[[Docs], None] | None = None,
    analysis_changes: dict[str, Any] | None = None,
    **spec: Any,
) -> None:
    text = manifests(namespace, edit, analysis_changes, **spec)
    await stack.kubectl("apply", "-f", "-", stdin=text)
    await wait_for(stack, namespace, lambda s: s.get("phase") == "Initialized", "Initialized")


async def new_image(stack: support.Stack, namespace: str, tag: str = "6.0.1") -> None:
    await stack.kubectl(
        "set",
        "image",
        "deployment/podinfo",
        f"podinfod=ghcr.io/stefanprodan/podinfo:{tag}",
        "-n",
        namespace,
    )


def valid(events: list[dict[str, Any]]) -> None:
    for event in events:
        jsonschema.validate(event, EVENT_SCHEMA)

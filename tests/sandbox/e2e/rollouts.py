"""Shared by the rollout end-to-end tests: the tutorial's objects in a namespace of their own,
the five services as processes against one sandbox stack, a plain subscriber recording what
integrations see, and polling the Canary's status through the real kubectl."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Callable
from typing import Any

import aiohttp
import jsonschema
import yaml
from nats.aio.client import Client

from libs import messages
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


async def get(stack: support.Stack, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    """``kubectl get <kind> <name> -o json``; None when it does not exist."""
    out = await stack.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if out.code != 0:
        assert "NotFound" in out.stderr, out.stderr
        return None
    found: dict[str, Any] = json.loads(out.stdout)
    return found


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


# --------------------------------------------------------------------------- webhooks and gates

LOADTESTER = "http://flagger-loadtester.test"
GATE = f"{LOADTESTER}/gate/check"  # 200 while the canary's gate is open, else 403
HALT = f"{LOADTESTER}/gate/halt"  # always 403: a hook that always fails
ROLLBACK = f"{LOADTESTER}/rollback/check"  # 200 while the rollback switch is open, else 403


def hook(name: str, kind: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": url, "timeout": "5s", **extra}


def with_hooks(*hooks: dict[str, Any], alerts_to: str = "") -> Callable[[Docs], None]:
    """Add ``hooks`` after the tutorial's load test; with ``alerts_to``, the canary alerts (all
    severities) to that Slack-style URL through an AlertProvider of its namespace."""

    def edit(docs: Docs) -> None:
        canary = docs[3]
        canary["spec"]["analysis"]["webhooks"].extend(hooks)
        if alerts_to:
            namespace = canary["metadata"]["namespace"]
            docs.append(
                {
                    "apiVersion": "flagger.app/v1beta1",
                    "kind": "AlertProvider",
                    "metadata": {"name": "chat", "namespace": namespace},
                    "spec": {"type": "slack", "address": alerts_to},
                }
            )
            canary["spec"]["analysis"]["alerts"] = [
                {"name": "chat", "severity": "info", "providerRef": {"name": "chat"}}
            ]

    return edit


async def loadtester(stack: support.Stack, path: str, namespace: str) -> None:
    """``curl -d '{"name": "podinfo", "namespace": ...}' http://flagger-loadtester.test<path>``."""
    body = {"name": "podinfo", "namespace": namespace}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            LOADTESTER + path, json=body, proxy=stack.env["HTTP_PROXY"], timeout=support.HTTP
        ) as resp,
    ):
        assert resp.status == 202, f"{path}: {resp.status} {await resp.text()}"


class Calls:
    """Every webhook command on the bus (a plain subscriber beside the webhook-runners): one
    per hook per analysis step, so counting them counts the steps a gate was asked on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def handle(self, msg: Any) -> None:
        command = json.loads(msg.data)
        self.seen.append((command["canary"]["namespace"], command["webhook"]["type"]))

    def count(self, namespace: str, kind: str) -> int:
        return self.seen.count((namespace, kind))

    async def reach(self, namespace: str, kind: str, count: int) -> None:
        async def counted() -> int:
            return self.count(namespace, kind)

        await support.poll(
            counted, lambda n: n >= count, timeout=60, what=f"{kind} hooks of {namespace} called"
        )


async def calls(nc: Client) -> Calls:
    seen = Calls()
    await nc.subscribe(messages.CMD_WEBHOOK, cb=seen.handle)
    return seen


async def said(recorder: Recorder, kind: str, message: str) -> None:
    """Until a ``kind`` event with exactly ``message`` arrives (events follow the status write)."""

    async def messages_() -> list[str]:
        return recorder.messages(kind)

    await support.poll(messages_, lambda seen: message in seen, timeout=30, what=message)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)

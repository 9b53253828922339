"""Standalone mode end to end: the five services as processes in standalone mode against the
sandbox's standalone stack (NATS, Prometheus, the gateway's Admin API, a stable and a canary
app; no Kubernetes simulator), driven with the real ``sluice`` CLI.

* a wrong Admin API key: the canary says why in its status (Valid False) and the route is not
  touched; with the right key it initializes;
* A/B: while the analysis runs, requests with the header reach the canary and the others the
  stable upstream; ``sluice promote`` ends it and the stable upstream serves the canary's nodes;
* ``sluice abort`` mid-analysis rolls back: everything on the stable upstream again;
* ``sluice delete canary``: the route is byte for byte what it was (``update_time`` aside).
"""

from __future__ import annotations

import collections
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from sandbox import stack as sandbox_stack
from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.sandbox.e2e import support

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROUTE, STABLE, CANARY = "shop", "shop-stable", "shop-canary"
SERVICES = ("watcher", "analyzer", "traffic_shifter", "webhook_runner", "notifier")
MANIFEST = """
apiVersion: sluice.dev/v1alpha1
kind: ApisixCanary
metadata:
  name: shop
spec:
  route: {id: shop}
  upstreams:
    stable: {id: shop-stable}
    canary: {id: shop-canary}
  revision: "6.0.0"
  analysis:
    interval: 1s
    threshold: 2
    iterations: 1000
    match:
      - headers:
          x-canary:
            exact: insider
"""


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    root = tmp_path_factory.mktemp("standalone")
    env = support.base_env(root)
    done = subprocess.run(
        support.sandbox_command("up", "--standalone", "--free-ports"),
        env=env,
        cwd=support.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"sandbox up --standalone failed:\n{done.stdout}\n{done.stderr}"
    running = support.Stack(root, env | sandbox_stack.parse_env((root / "env").read_text()))
    try:
        yield running
    finally:
        support.stop_stack_blocking(running)


class Admin:
    def __init__(self, stack: support.Stack) -> None:
        self.url = stack.env["APISIX_ADMIN_URL"] + "/apisix/admin/"
        self.key = pathlib.Path(stack.env["APISIX_ADMIN_KEY_FILE"]).read_text().strip()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession(timeout=support.HTTP) as http,
            http.request(method, self.url + path, json=body, headers={"X-API-KEY": self.key}) as r,
        ):
            answer = await r.json(content_type=None)
            assert r.status < 300, f"{method} {path}: {r.status} {answer}"
            return answer

    async def route(self) -> dict[str, Any]:
        value = (await self.call("GET", f"routes/{ROUTE}"))["value"]
        return {k: v for k, v in value.items() if k != "update_time"}


def sluice(stack: support.Stack, *args: str, check: bool = True) -> str:
    env = support.base_env(stack.root) | {
        "NATS_URL": stack.env["NATS_URL"],
        "SLUICE_MODE": "standalone",
        "SLUICE_USER": "e2e",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=support.REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, f"sluice {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


async def status(stack: support.Stack) -> dict[str, Any]:
    out = sluice(stack, "get", "canaries", "-o", "json", check=False)
    try:
        items = json.loads(out).get("items") or []
    except ValueError:
        return {}
    found = next((i for i in items if i["metadata"]["name"] == "shop"), {})
    return dict(found.get("status") or {})


async def versions(stack: support.Stack, headers: dict[str, str], n: int = 20) -> dict[str, int]:
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession(timeout=support.HTTP) as http:
        for _ in range(n):
            async with http.get(stack.env["GATEWAY_URL"] + "/", headers=headers) as resp:
                seen[str((await resp.json(content_type=None)).get("version"))] += 1
    return dict(seen)


async def deploy(stack: support.Stack, app: str, version: str) -> None:
    """A new version behind one of the stack's upstreams (``python -m sandbox deploy``)."""
    result = await stack.sandbox("deploy", app, "--version", version)
    assert result.code == 0, result.stderr


def start_services(
    stack: support.Stack, service: ServiceFactory, key_file: str
) -> dict[str, ServiceProcess]:
    env = {
        "SLUICE_MODE": "standalone",
        "SLUICE_APISIX_ADMIN_URL": stack.env["APISIX_ADMIN_URL"],
        "SLUICE_APISIX_ADMIN_KEY_FILE": key_file,
        "SLUICE_PROMETHEUS_URL": stack.env["PROMETHEUS_URL"],
        "SLUICE_MIN_INTERVAL_S": "1",
        "SLUICE_LOADTESTER_PORT": "0",
    }
    return {name: service(name, stack.env["NATS_URL"], **env) for name in SERVICES}


async def test_a_standalone_canary_from_a_wrong_key_to_a_b_promotion_abort_and_deletion(
    standalone: support.Stack, service: ServiceFactory, tmp_path: pathlib.Path
) -> None:
    admin = Admin(standalone)
    stable_node, canary_node = standalone.env["STABLE_NODE"], standalone.env["CANARY_NODE"]
    await admin.call("PUT", f"upstreams/{STABLE}", {"nodes": {stable_node: 1}})
    await admin.call("PUT", f"upstreams/{CANARY}", {"nodes": {canary_node: 1}})
    await admin.call(
        "PUT",
        f"routes/{ROUTE}",
        {"uri": "/*", "upstream_id": STABLE, "plugins": {"prometheus": {"prefer_name": False}}},
    )
    original = await admin.route()

    # a wrong key: refused with the reason in the status, nothing written to the route
    wrong = tmp_path / "wrong-key"
    wrong.write_text("not-the-key\n")
    procs = start_services(standalone, service, str(wrong))
    for proc in procs.values():
        await proc.ready()
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(MANIFEST)
    assert "shop (ApisixCanary) created" in sluice(standalone, "apply", "-f", str(manifest))
    refused = await support.poll(
        lambda: status(standalone),
        lambda s: any(
            c.get("type") == "Valid" and c.get("status") == "False"
            for c in s.get("conditions") or []
        ),
        timeout=60,
        what="the Valid condition False",
    )
    message = next(c["message"] for c in refused["conditions"] if c["type"] == "Valid")
    assert "refused the key" in message, message
    assert "SLUICE_APISIX_ADMIN_KEY_FILE" in message, message
    assert "not-the-key" not in json.dumps(refused)
    assert await admin.route() == original

    # the right key: the canary initializes
    procs["traffic_shifter"].terminate()
    shifter = service(
        "traffic_shifter",
        standalone.env["NATS_URL"],
        SLUICE_MODE="standalone",
        SLUICE_APISIX_ADMIN_URL=standalone.env["APISIX_ADMIN_URL"],
        SLUICE_APISIX_ADMIN_KEY_FILE=standalone.env["APISIX_ADMIN_KEY_FILE"],
    )
    await shifter.ready()
    await support.poll(
        lambda: status(standalone),
        lambda s: s.get("phase") == "Initialized",
        timeout=60,
        what="Initialized",
    )

    # A/B: the header decides while the analysis runs
    await deploy(standalone, "canary", "6.0.1")
    assert "rolling out 6.0.1" in sluice(
        standalone, "rollout", "start", "shop", "--revision", "6.0.1"
    )
    await support.poll(
        lambda: status(standalone),
        lambda s: s.get("phase") == "Progressing" and (s.get("iterations") or 0) >= 1,
        timeout=60,
        what="Progressing",
    )
    assert await versions(standalone, {"x-canary": "insider"}) == {"6.0.1": 20}
    assert await versions(standalone, {}) == {"6.0.0": 20}
    assert "promote of shop.default requested by e2e" in sluice(
        standalone, "promote", "shop", "--reason", "looks good"
    )
    watched = sluice(standalone, "watch", "shop", "--timeout", "90s")  # exit 0: promoted
    assert "Succeeded" in watched, watched
    stable = (await admin.call("GET", f"upstreams/{STABLE}"))["value"]["nodes"]
    assert stable == {canary_node: 1}  # promoted: the stable side serves the canary's nodes
    assert await versions(standalone, {}) == {"6.0.1": 20}

    # the user's next release: the stable upstream back on the stable app, now 6.0.1 too
    await admin.call("PATCH", f"upstreams/{STABLE}/nodes", {stable_node: 1})
    await deploy(standalone, "stable", "6.0.1")
    await deploy(standalone, "canary", "6.0.2")
    sluice(standalone, "rollout", "start", "shop", "--revision", "6.0.2")
    await support.poll(
        lambda: status(standalone),
        lambda s: (
            s.get("phase") == "Progressing"
            and s.get("lastAppliedSpec") == "6.0.2"
            and (s.get("iterations") or 0) >= 1
        ),
        timeout=60,
        what="Progressing 6.0.2",
    )
    assert await versions(standalone, {"x-canary": "insider"}) == {"6.0.2": 20}
    assert "abort of shop.default requested by e2e" in sluice(
        standalone, "abort", "shop", "--reason", "not today"
    )
    watched = sluice(standalone, "watch", "shop", "--timeout", "90s", check=False)
    assert "Failed" in watched, watched  # and exit 1: rolled back
    assert (await status(standalone)).get("phase") == "Failed"
    assert await versions(standalone, {"x-canary": "insider"}) == {"6.0.1": 20}

    # deleting the canary gives the route back exactly
    assert "deleting" in sluice(standalone, "delete", "canary", "shop")
    await support.poll(
        lambda: status(standalone), lambda s: not s, timeout=60, what="the canary gone"
    )
    assert await admin.route() == original

"""``python -m scripts.demo_standalone`` (``make demo-standalone``): the demo's two rollouts in
standalone mode — APISIX without Kubernetes, driven through its Admin API.

On its own sandbox stack (``python -m sandbox up --standalone --with-sluice``: NATS, Prometheus,
the APISIX gateway simulator with its Admin API, a stable and a canary podinfo, the five Sluice
services in standalone mode; no Kubernetes simulator), it does what a user of plain APISIX does:

1. creates the route ``podinfo`` (upstream ``podinfo-stable``) and the upstream
   ``podinfo-canary`` through the Admin API, and remembers the route as it was;
2. ``sluice apply -f`` an ApisixCanary for that route (a load-test webhook on the webhook-runner,
   the builtin success-rate and duration checks);
3. deploys 6.0.1 behind the canary upstream and runs ``sluice rollout start --revision 6.0.1``:
   the weights go 10 → 50 and the canary is promoted (the stable upstream now has the canary's
   nodes: re-deployed stable takes over);
4. deploys a faulty 6.0.2 (half its requests answer 500) and starts it: rolled back;
5. ``sluice delete canary`` — the route is the user's again, exactly as it was.

Each step is printed as it happens; the exit status is 0 when every check held. ``--keep``
leaves the stack running (``source <dir>/env``); ``--dir`` chooses where it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp

REPO = pathlib.Path(__file__).resolve().parents[1]
NAME, NAMESPACE, ROUTE = "podinfo", "default", "podinfo"
STABLE_UPSTREAM, CANARY_UPSTREAM = "podinfo-stable", "podinfo-canary"
HTTP = aiohttp.ClientTimeout(total=10)
T = TypeVar("T")


class DemoFailure(Exception):
    """A check of the demo did not hold."""


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def canary_manifest(gateway_url: str, loadtester_url: str, interval: str) -> str:
    return f"""\
apiVersion: sluice.dev/v1alpha1
kind: ApisixCanary
metadata:
  name: {NAME}
  namespace: {NAMESPACE}
spec:
  route:
    id: {ROUTE}
  upstreams:
    stable:
      id: {STABLE_UPSTREAM}
    canary:
      id: {CANARY_UPSTREAM}
  revision: "6.0.0"
  analysis:
    interval: {interval}
    threshold: 3
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 10s
      - name: request-duration
        thresholdRange:
          max: 500
        interval: 10s
    webhooks:
      - name: load-test
        url: {loadtester_url}/
        timeout: 5s
        type: rollout
        metadata:
          cmd: "hey -z 1m -q 20 -c 2 {gateway_url}/api/info"
"""


class Demo:
    def __init__(self, root: pathlib.Path, interval: str) -> None:
        self.root = root
        self.interval = interval
        self.env: dict[str, str] = {}
        self.admin_key = ""
        self.started = False

    # --- the stack

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "NATS_"))}
        return env | {"SANDBOX_DIR": str(self.root)}

    def sandbox(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", *args],
            env=self.base_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise DemoFailure(f"python -m sandbox {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def up(self) -> None:
        say(
            "starting the standalone stack: NATS, Prometheus, APISIX (Admin API), 2 podinfos, Sluice"
        )
        self.started = True
        self.sandbox(
            "up",
            "--standalone",
            "--with-sluice",
            "--free-ports",
            # the demo's short analysis interval (Flagger's minimum is 10 s)
            "--sluice-env",
            "SLUICE_MIN_INTERVAL_S=1",
            timeout=180,
        )
        for line in (self.root / "env").read_text().splitlines():
            line = line.removeprefix("export ").strip()
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                self.env[key] = value.strip().strip("'\"")
        self.admin_key = pathlib.Path(self.env["APISIX_ADMIN_KEY_FILE"]).read_text().strip()
        say(
            f"APISIX Admin API at {self.env['APISIX_ADMIN_URL']}, gateway at {self.env['GATEWAY_URL']}"
        )

    def down(self) -> None:
        if self.started:
            self.sandbox("down", timeout=120)

    def sluice(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = self.base_env() | {
            "NATS_URL": self.env["NATS_URL"],
            "SLUICE_MODE": "standalone",
            "SLUICE_USER": "demo",
        }
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise DemoFailure(f"sluice {' '.join(args)} failed:\n{done.stderr}")
        return done

    # --- the Admin API

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        key = self.admin_key
        async with (
            aiohttp.ClientSession(timeout=HTTP) as http,
            http.request(
                method,
                f"{self.env['APISIX_ADMIN_URL']}/apisix/admin/{path}",
                json=body,
                headers={"X-API-KEY": key},
            ) as resp,
        ):
            answer = await resp.json(content_type=None)
            if resp.status >= 300:
                raise DemoFailure(f"{method} {path}: {resp.status} {answer}")
            return answer

    async def route(self) -> dict[str, Any]:
        value = (await self.admin("GET", f"routes/{ROUTE}"))["value"]
        return {k: v for k, v in value.items() if k != "update_time"}

    async def create_route(self) -> dict[str, Any]:
        stable, canary = self.env["STABLE_NODE"], self.env["CANARY_NODE"]
        await self.admin(
            "PUT",
            f"upstreams/{STABLE_UPSTREAM}",
            {"type": "roundrobin", "nodes": {stable: 1}},
        )
        await self.admin(
            "PUT",
            f"upstreams/{CANARY_UPSTREAM}",
            {"type": "roundrobin", "nodes": {canary: 1}},
        )
        await self.admin(
            "PUT",
            f"routes/{ROUTE}",
            {
                "name": "podinfo",
                "uri": "/*",
                "upstream_id": STABLE_UPSTREAM,
                "plugins": {"prometheus": {}, "limit-count": {"count": 100000, "time_window": 60}},
            },
        )
        say(
            f"route {ROUTE} -> upstream {STABLE_UPSTREAM} ({stable}); upstream {CANARY_UPSTREAM} ({canary})"
        )
        return await self.route()

    # --- waiting

    async def canary(self) -> dict[str, Any]:
        done = self.sluice("get", "canaries", "-o", "json", check=False)
        if done.returncode != 0:
            return {}
        items = json.loads(done.stdout).get("items") or []
        return next((i for i in items if i["metadata"]["name"] == NAME), {})

    async def until(
        self,
        probe: Callable[[], Awaitable[T]],
        ok: Callable[[T], bool],
        timeout: float,
        what: str,
        show: Callable[[T], str] | None = None,
    ) -> T:
        deadline = time.monotonic() + timeout
        last_shown = ""
        while True:
            value = await probe()
            shown = show(value) if show else ""
            if shown and shown != last_shown:
                say(f"  {shown}")
                last_shown = shown
            if ok(value):
                return value
            if time.monotonic() > deadline:
                raise DemoFailure(f"{what}: not within {timeout:g}s (last: {shown or value})")
            await asyncio.sleep(1.0)

    async def rollout(
        self, revision: str, expected: str, env: Sequence[str] = ()
    ) -> dict[str, Any]:
        flags = [arg for item in env for arg in ("--env", item)]
        self.sandbox("deploy", "canary", "--version", revision, *flags)
        say(
            f"deployed {revision} behind {CANARY_UPSTREAM}{' with ' + ', '.join(env) if env else ''}"
        )
        print(self.sluice("rollout", "start", NAME, "--revision", revision).stdout.strip())

        def phase(obj: dict[str, Any]) -> str:
            status = obj.get("status") or {}
            return f"{status.get('phase', '?')} weight {status.get('canaryWeight') or 0}%" + (
                f", {status['failedChecks']} failed checks" if status.get("failedChecks") else ""
            )

        done = await self.until(
            self.canary,
            lambda o: (
                (o.get("status") or {}).get("phase") == expected
                and (o.get("status") or {}).get("lastAppliedSpec") == revision
            ),
            timeout=300,
            what=f"rollout of {revision} ending {expected}",
            show=phase,
        )
        say(f"rollout of {revision}: {expected}")
        return done

    async def served_by(self, n: int = 40) -> dict[str, int]:
        """Which version answered ``n`` requests through the gateway."""
        seen: dict[str, int] = {}
        async with aiohttp.ClientSession(timeout=HTTP) as http:
            for _ in range(n):
                async with http.get(f"{self.env['GATEWAY_URL']}/api/info") as resp:
                    try:
                        version = str((await resp.json(content_type=None)).get("version"))
                    except (ValueError, AttributeError):
                        version = f"status {resp.status}"
                    seen[version] = seen.get(version, 0) + 1
        return seen

    # --- the story

    async def run(self) -> None:
        self.up()
        original = await self.create_route()
        gateway, loadtester = (
            self.env["GATEWAY_URL"],
            f"http://127.0.0.1:{self.env['LOADTESTER_PORT']}",
        )
        manifest = self.root / "podinfo-canary.yaml"
        manifest.write_text(canary_manifest(gateway, loadtester, self.interval))
        print(self.sluice("apply", "-f", str(manifest)).stdout.strip())
        await self.until(
            self.canary,
            lambda o: (o.get("status") or {}).get("phase") == "Initialized",
            timeout=60,
            what="the canary initialized",
        )
        say("canary initialized; all traffic on the stable upstream")

        await self.rollout("6.0.1", "Succeeded")
        stable = (await self.admin("GET", f"upstreams/{STABLE_UPSTREAM}"))["value"]["nodes"]
        canary_nodes = (await self.admin("GET", f"upstreams/{CANARY_UPSTREAM}"))["value"]["nodes"]
        if stable != canary_nodes:
            raise DemoFailure(f"promoted, but the stable upstream has {stable}, not {canary_nodes}")
        say(f"promoted: upstream {STABLE_UPSTREAM} now serves the canary's nodes {list(stable)}")
        # the user's release process re-deploys stable with the promoted version and points the
        # stable upstream back at it (here: the stable podinfo, now 6.0.1)
        self.sandbox("deploy", "stable", "--version", "6.0.1")
        # a sub-path PATCH replaces the nodes (a PATCH of the upstream would merge the maps)
        await self.admin(
            "PATCH", f"upstreams/{STABLE_UPSTREAM}/nodes", {self.env["STABLE_NODE"]: 1}
        )
        served = await self.served_by()
        say(f"40 requests through the gateway answered by {served}")
        if set(served) != {"6.0.1"}:
            raise DemoFailure(f"after promotion the gateway should serve 6.0.1 only: {served}")

        await self.rollout("6.0.2", "Failed", env=("SANDBOX_ERROR_RATE=0.5",))
        served = await self.served_by()
        say(f"40 requests through the gateway answered by {served}")
        if set(served) != {"6.0.1"}:
            raise DemoFailure(f"after the rollback the gateway should serve 6.0.1 only: {served}")

        print(self.sluice("delete", "canary", NAME).stdout.strip())
        await self.until(self.canary, lambda o: not o, timeout=60, what="the canary gone")
        restored = await self.route()
        if restored != original:
            raise DemoFailure(f"the route was not restored:\nbefore {original}\nafter  {restored}")
        say("canary deleted; route podinfo is exactly as it was before the canary")


def main(argv: Sequence[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.demo_standalone",
        description=doc.split("\n\n", 1)[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", type=pathlib.Path, help="the stack's state directory")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--interval", default="3s", help="the analysis interval (default 3s)")
    args = parser.parse_args(argv)
    root = (args.dir or pathlib.Path(tempfile.mkdtemp(prefix="sluice-standalone-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    demo = Demo(root, args.interval)
    ok = False
    try:
        asyncio.run(demo.run())
        ok = True
    except DemoFailure as exc:
        say(f"FAILED: {exc}")
        say(f"logs in {root / 'logs'}")
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        if args.keep and demo.started:
            say(
                f"the stack keeps running: source {root / 'env'}; stop it with "
                f"python -m sandbox --dir {root} down"
            )
        else:
            try:
                demo.down()
            except DemoFailure as exc:
                say(str(exc))
            if ok and args.dir is None:
                shutil.rmtree(root, ignore_errors=True)
    say("standalone demo passed" if ok else "standalone demo failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""One run's world: a fresh sandbox stack (``python -m sandbox up`` in the run's directory), the
five services as processes beside it, and the hands that break and mend them.

A fresh stack per run (not one stack with a namespace per run): the faults stop and restart
the stack's own NATS and Prometheus, and the drain check reads the durable consumers' totals,
so a run must not inherit another run's half-restarted processes or pending messages; and a
failed seed replays (``--seed S --runs 1``) in the same conditions it failed in. It costs the
stack's start, a few seconds a run.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import pathlib
from typing import Any

import aiohttp
import nats
from nats.aio.client import Client

from sandbox import control, faults, processes, readiness, stack
from sandbox.gateway.app import METRICS_PATH
from tests.chaos import schedule
from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.sandbox.e2e import support

HTTP = aiohttp.ClientTimeout(total=10)
RESTART_TIMEOUT = 30.0  # seconds a restarted component gets to answer again


async def _quiet(_error: Exception) -> None:
    """nats-py prints every connection error with its traceback unless told otherwise."""


async def connect(nats_url: str) -> Client:
    """A short-lived observer connection (the server may be restarting: fail, don't wait)."""
    return await nats.connect(nats_url, connect_timeout=2, allow_reconnect=False, error_cb=_quiet)


class World:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.stack: support.Stack | None = None
        self.factory = ServiceFactory(root / "services")
        self.services: dict[str, ServiceProcess] = {}
        self.env: dict[str, str] = {}
        self.nats_url = ""
        self.spawned: list[processes.Handle] = []  # stack processes restarted by a fault
        # one at a time per process: two faults on one service overlapping (a kill and a kill
        # mid load test) take turns, as one pod killed twice does; without this both would
        # start a replacement, and the second would find the first on its port
        self._turns: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        (self.root / "services").mkdir(parents=True, exist_ok=True)
        self.stack = await asyncio.to_thread(support.start_stack_blocking, self.root / "stack")
        env = self.stack.env
        self.nats_url = env["NATS_URL"]
        self.env = {
            "SLUICE_KUBECONFIG": env["KUBECONFIG"],
            "SLUICE_PROMETHEUS_URL": env["PROMETHEUS_URL"],
            "SLUICE_LOADTESTER_PORT": env["LOADTESTER_PORT"],
            "SLUICE_MIN_INTERVAL_S": "1",
            "HTTP_PROXY": env["HTTP_PROXY"],
            "NO_PROXY": env["NO_PROXY"],
        }
        for name in schedule.SERVICES:
            self.services[name] = self.factory(name, self.nats_url, **self.env)
        await asyncio.gather(*(p.ready() for p in self.services.values()))

    def stop(self) -> list[str]:
        """Stop everything; what outlived ``sandbox down`` (then stopped here) as problems."""
        for process in self.factory.started:
            process.kill()
        if self.stack is not None:
            support.stop_stack_blocking(self.stack)
            self.stack = None
        left = [h for h in self.spawned if processes.alive(h)]
        processes.stop_all(left)
        return [f"a restarted stack process outlived sandbox down (pid {h.pid})" for h in left]

    @property
    def kube_url(self) -> str:
        assert self.stack is not None
        return self.stack.env["KUBE_URL"]

    # ------------------------------------------------------------------ faults

    async def kill_service(self, name: str, down_s: float) -> None:
        """SIGKILL ``name``; start a new one ``down_s`` later and wait until it is ready."""
        async with self._turns[name]:
            self.services[name].kill()
            await asyncio.sleep(down_s)
            self.services[name] = self.factory(name, self.nats_url, **self.env)
            await self.services[name].ready()

    async def restart_component(self, name: str, down_s: float) -> None:
        """Stop the stack's ``name`` (``nats``, ``prometheus``) and start it again ``down_s``
        later with the same command (same port, same store); the state file follows, so
        ``sandbox down`` stops the new process."""
        async with self._turns[name]:
            await self._restart_component(name, down_s)

    async def _restart_component(self, name: str, down_s: float) -> None:
        layout = stack.Layout(self.root / "stack")
        state = control.State.load(layout)
        assert state is not None
        running = next(r for r in state.running if r.name == name)
        await asyncio.to_thread(processes.stop_all, [running.handle])
        await asyncio.sleep(down_s)
        env = {k: v for k, v in os.environ.items() if k not in control.PROXY_VARIABLES}
        handle = processes.spawn(running.argv, pathlib.Path(running.log), env, stack.REPO_ROOT)
        self.spawned.append(handle)
        # read, change and write the state file with no await in between: two components
        # restarting at once must not overwrite each other's new process (it would outlive
        # ``sandbox down``)
        state = control.State.load(layout)
        assert state is not None
        index = next(i for i, r in enumerate(state.running) if r.name == name)
        state.running[index] = control.Running(name, handle, running.log, running.url, running.argv)
        state.save(layout)
        check: readiness.Check
        if name == "nats":
            check = readiness.PortGreets(state.ports["nats"], b"INFO")
        else:
            check = readiness.HttpAnswers(f"{running.url}/-/ready")
        deadline = asyncio.get_running_loop().time() + RESTART_TIMEOUT
        while not await asyncio.to_thread(check):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{name} did not come back within {RESTART_TIMEOUT}s")
            await asyncio.sleep(0.1)

    async def kube_fault(self, mode: str, down_s: float) -> None:
        await asyncio.to_thread(faults.send, self.kube_url, {"fault": "drop-watches"})
        await asyncio.to_thread(faults.send, self.kube_url, {"fault": mode, "seconds": down_s})
        await asyncio.sleep(down_s)

    async def metrics_gone(self, down_s: float) -> None:
        assert self.stack is not None
        base = self.stack.env["GATEWAY_METRICS_URL"].removesuffix(METRICS_PATH)
        await asyncio.to_thread(faults.send, base, {"fault": "metrics-gone", "seconds": down_s})
        await asyncio.sleep(down_s)

    async def load_test_running(self) -> bool:
        """Whether the webhook-runner's load test runs (its ``sluice_tasks`` claim)."""
        nc = await connect(self.nats_url)
        try:
            kv = await nc.jetstream(timeout=5).key_value("sluice_tasks")
            try:
                return bool(await kv.keys())
            except Exception:  # nats.js.errors.NoKeysError: no task
                return False
        finally:
            await nc.close()

    async def kill_mid_load_test(self, down_s: float, within_s: float = 20.0) -> None:
        """SIGKILL the webhook-runner once a load test runs on it (or after ``within_s``)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while asyncio.get_running_loop().time() < deadline:
            try:
                if await self.load_test_running():
                    break
            except Exception:  # NATS restarting: look again
                pass
            await asyncio.sleep(0.2)
        await self.kill_service("webhook_runner", down_s)

    # ------------------------------------------------------------------ reading (never faulted)

    async def get(self, path: str) -> Any:
        """``GET`` on the Kubernetes API as an observer the fault switches exempt."""
        headers = {faults.UNFAULTED_HEADER: "1"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.kube_url + path, headers=headers, timeout=HTTP) as resp,
        ):
            if resp.status == 404:
                return None
            resp.raise_for_status()
            return await resp.json()

    async def patch(self, path: str, body: Any) -> None:
        headers = {
            faults.UNFAULTED_HEADER: "1",
            "Content-Type": "application/strategic-merge-patch+json",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.patch(
                self.kube_url + path, data=json.dumps(body), headers=headers, timeout=HTTP
            ) as resp,
        ):
            if resp.status >= 300:
                raise RuntimeError(f"PATCH {path}: {resp.status} {await resp.text()}")

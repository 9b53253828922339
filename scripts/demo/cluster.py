"""The demo's own sandbox: ``python -m sandbox up --with-sluice`` in a state directory of its own
with free ports and a pod network of its own, kubectl against it, and ``down`` at the end. The
children get an environment that cannot point them at another sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import pathlib
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from sandbox import control as sandbox_control
from sandbox import processes as sandbox_processes
from sandbox import stack as sandbox_stack
from scripts.demo import outcome, snapshot, tutorial, waiting

POD_PORT = 9898  # podinfo's port, on every pod's own loopback address
POD_PROBES = 32  # pod addresses checked when choosing a pod network

# What the demo drops from the environment it hands its children: a shell that sourced a
# sandbox env file (or runs Sluice) must not point the demo's stack or kubectl elsewhere.
DROPPED_PREFIXES = ("SLUICE_", "SANDBOX_", "KUBE")
DROPPED_VARIABLES = frozenset(sandbox_control.PROXY_VARIABLES) | {
    "NATS_URL",
    "PROMETHEUS_URL",
    "GATEWAY_URL",
    "POD_NETWORK",
    "LOADTESTER_PORT",
}


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without what would point the stack or kubectl at another sandbox."""
    return {
        k: v
        for k, v in base.items()
        if k not in DROPPED_VARIABLES and not k.startswith(DROPPED_PREFIXES)
    }


def network_in_use(network: ipaddress.IPv4Network, probes: int = POD_PROBES) -> bool:
    """Whether another stack's pods seem to use ``network``: one of its first pod addresses
    (the simulator hands them out from .0.2 on) has the app's port taken."""
    first = int(network.network_address) + 2
    for offset in range(probes):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((str(ipaddress.IPv4Address(first + offset)), POD_PORT))
            except OSError:
                return True
    return False


def random_pod_network() -> ipaddress.IPv4Network:
    """A /16 of its own, one no other stack's pods seem to use: sandbox-up uses 127.42, the
    sandbox's e2e tests 127.50-99, its unit tests 127.100+; the demo picks in 127.20-39."""
    candidates = [ipaddress.IPv4Network(f"127.{n}.0.0/16") for n in range(20, 40)]
    random.shuffle(candidates)
    for network in candidates:
        if not network_in_use(network):
            return network
    return candidates[0]


class Sandbox:
    """The stack in ``root``: started by ``up``, used through ``kubectl``."""

    def __init__(
        self,
        root: pathlib.Path,
        board: snapshot.Board,
        pod_network: ipaddress.IPv4Network,
        deadline: waiting.Deadline,
    ) -> None:
        self.root = root
        self.board = board
        self.pod_network = pod_network
        self.deadline = deadline
        self.env = child_environment(os.environ)
        self.kube_env: dict[str, str] = {}  # env plus the stack's env file, once it is up
        self.up_proc: asyncio.subprocess.Process | None = None
        self.stack_started = False  # `sandbox up` ran (down is needed even if it failed)
        self.kubectl_s = 0.0  # how long the last kubectl command took

    def log(self, *names: str) -> str:
        logs = self.root / "logs"
        return ", ".join(tutorial.shown_path(logs / f"{name}.log") for name in names)

    async def kubectl(self, *args: str, show: bool = True) -> str:
        binary = shutil.which("kubectl", path=self.env.get("PATH")) or "kubectl"  # main checked
        if show:
            self.board.action("$ kubectl " + shlex.join(args))
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.kube_env or self.env,
            cwd=tutorial.REPO,
            start_new_session=True,  # a Ctrl-C reaches the demo only; it stops what runs
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), tutorial.KUBECTL_TIMEOUT_S)
        except TimeoutError as exc:
            raise outcome.DemoFailure(
                f"expected `kubectl {shlex.join(args)}` to finish within "
                f"{tutorial.KUBECTL_TIMEOUT_S:g}s; it did not "
                f"(Kubernetes API log: {self.log('kube')})"
            ) from exc
        finally:
            if proc.returncode is None:  # timed out or interrupted
                proc.kill()
                await proc.wait()
        self.kubectl_s = time.monotonic() - started
        if proc.returncode != 0:
            raise outcome.DemoFailure(
                f"expected `kubectl {shlex.join(args)}` to succeed; it exited with "
                f"{proc.returncode}: {err.decode(errors='replace').strip()}"
            )
        return out.decode(errors="replace")

    async def get_json(self, *args: str) -> dict[str, Any]:
        text = await self.kubectl("get", *args, "-n", tutorial.NAMESPACE, "-o", "json", show=False)
        data = json.loads(text)
        return data if isinstance(data, dict) else {}

    async def up(self, url: str) -> None:
        """``python -m sandbox up``, its output shown as it comes; the notifier posts to ``url``."""
        argv = [
            sys.executable,
            "-m",
            "sandbox",
            "--dir",
            str(self.root),
            "up",
            "--free-ports",
            "--pod-network",
            str(self.pod_network),
            "--with-sluice",
            "--sluice-env",
            f"SLUICE_SLACK_URL={url}",
        ]
        self.board.action(
            "$ python -m sandbox --dir "
            + shlex.quote(tutorial.shown_path(self.root))
            + " up --free-ports --with-sluice --sluice-env SLUICE_SLACK_URL="
            + url
        )
        self.stack_started = True
        proc = self.up_proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=tutorial.REPO,
            start_new_session=True,  # signals reach it from the demo, in order
        )
        output: list[str] = []

        async def follow() -> int:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                output.append(line)
                if line:
                    self.board.action("sandbox: " + line.removeprefix("sandbox: "), style="dim")
            return await proc.wait()

        try:
            code = await asyncio.wait_for(follow(), self.deadline.budget(tutorial.UP_TIMEOUT_S))
        except TimeoutError as exc:
            raise outcome.DemoFailure(
                f"expected `python -m sandbox up` to start the stack within "
                f"{tutorial.UP_TIMEOUT_S:g}s; it did not (logs in {self.log('*')})"
            ) from exc
        if code != 0:
            tail = "\n".join(output[-15:])
            raise outcome.DemoFailure(
                f"expected `python -m sandbox up` to start the stack; it exited with {code}:\n"
                f"{tail}"
            )
        env_file = self.root / "env"
        self.kube_env = {**self.env, **sandbox_stack.parse_env(env_file.read_text())}
        self.board.action(f"stack is up; its env file: {tutorial.shown_path(env_file)}")

    async def stop_up(self) -> None:
        """An interrupted `sandbox up` stops what it started itself (on SIGINT)."""
        proc = self.up_proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), tutorial.UP_INTERRUPT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def down(root: pathlib.Path, env: Mapping[str, str]) -> tuple[bool, str]:
    """``python -m sandbox --dir root down``, then check every recorded process is gone."""
    try:
        state = sandbox_control.State.load(sandbox_stack.Layout(root))
    except sandbox_control.StackError:
        state = None
    handles = [r.handle for r in state.running] if state is not None else []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", "--dir", str(root), "down"],
            env=dict(env),
            cwd=tutorial.REPO,
            capture_output=True,
            text=True,
            timeout=tutorial.DOWN_TIMEOUT_S,
            start_new_session=True,  # a second Ctrl-C does not cut the teardown short
        )
    except subprocess.TimeoutExpired:
        return (
            False,
            f"`python -m sandbox --dir {root} down` did not finish in {tutorial.DOWN_TIMEOUT_S:g}s",
        )
    left = [h.pid for h in handles if sandbox_processes.alive(h)]
    if done.returncode != 0 or left:
        return False, (
            f"expected `python -m sandbox --dir {root} down` to stop everything; it exited with "
            f"{done.returncode} and left pids {left} running:\n{done.stdout}{done.stderr}"
        )
    if not handles:
        return True, "nothing of the stack is left running"
    return True, f"stopped everything the demo started ({len(handles)} processes)"

"""Drive a real ``python -m sandbox`` stack from tests: start and stop it in a temporary state
directory, run the real kubectl with its env file, poll with deadlines, send load.

Every stack gets its own directory (``SANDBOX_DIR``), OS-chosen ports (``--free-ports``) and a
random pod network, so it never meets a developer's ``.sandbox/`` or another test's stack.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import ipaddress
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import nats
import nats.aio.client
import nats.js.errors
from nats.aio.msg import Msg

from libs import messages
from sandbox import control, processes, stack
from sandbox.kube import cluster as kube_cluster
from tests.fixtures import services

REPO = pathlib.Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "tests" / "data" / "manifests"
COMMAND_TIMEOUT = 60.0  # seconds one sandbox / kubectl command may take
HTTP = aiohttp.ClientTimeout(total=10)
T = TypeVar("T")


@dataclasses.dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def random_pod_network() -> ipaddress.IPv4Network:
    """A /16 of its own that no running stack claims (the simulator's unit tests use
    127.100-250, so stay below them): two test runs, or a test run beside a developer's
    stack, must not share pod addresses."""
    candidates = [ipaddress.IPv4Network(f"127.{n}.0.0/16") for n in range(50, 100)]
    random.shuffle(candidates)
    for network in candidates:
        if not kube_cluster.pod_network_in_use(network):
            return network
    return candidates[0]  # all taken: `sandbox up` refuses it, naming the setting


def sandbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *args]


def base_env(root: pathlib.Path) -> dict[str, str]:
    """A clean environment: no proxy or kube settings of the developer's shell leak in."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SANDBOX_DIR": str(root),
        "LANG": "C.UTF-8",
    }


async def run(
    argv: list[str],
    env: dict[str, str],
    stdin: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Result(proc.returncode or 0, out.decode(), err.decode())


@dataclasses.dataclass
class Stack:
    """A running stack as its env file describes it."""

    root: pathlib.Path
    env: dict[str, str]  # base_env + the env file's values

    def handles(self) -> dict[str, processes.Handle]:
        state = control.State.load(stack.Layout(self.root))
        assert state is not None, f"no state file in {self.root}"
        return {r.name: r.handle for r in state.running}

    async def sandbox(self, *args: str) -> Result:
        return await run(sandbox_command(*args), base_env(self.root))

    async def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> Result:
        binary = shutil.which("kubectl") or "/usr/bin/kubectl"
        result = await run([binary, *args], self.env, stdin=stdin)
        if check and result.code != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.code}):\n{result.stderr}"
            )
        return result

    async def routes(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.env["GATEWAY_ROUTES_URL"], timeout=HTTP) as resp,
        ):
            return await resp.json()  # type: ignore[no-any-return]

    async def wait_route(self, name: str, nodes: dict[str, tuple[int, int]]) -> None:
        """Until the gateway's route ``name`` sends to each upstream ``service: (weight, n
        nodes)`` (upstream names are ``<namespace>_<service>_<port>``)."""

        async def current() -> dict[str, tuple[int, int]]:
            for route in (await self.routes())["routes"]:
                if route["name"] == name:
                    return {
                        up["name"].split("_")[1]: (up["weight"], len(up["nodes"]))
                        for up in route["upstreams"]
                    }
            return {}

        await poll(current, lambda seen: seen == nodes, timeout=30, what=f"route {name} {nodes}")


def start_stack_blocking(root: pathlib.Path) -> Stack:
    """``python -m sandbox up`` (for module-scoped, synchronous fixtures)."""
    env = base_env(root)
    argv = sandbox_command("up", "--free-ports", "--pod-network", str(random_pod_network()))
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"sandbox up failed:\n{done.stdout}\n{done.stderr}"
    return Stack(root, env | stack.parse_env((root / "env").read_text()))


def stop_stack_blocking(running: Stack) -> None:
    handles = running.handles()
    done = subprocess.run(
        sandbox_command("down"),
        env=base_env(running.root),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"sandbox down failed:\n{done.stdout}\n{done.stderr}"
    left = [name for name, handle in handles.items() if processes.alive(handle)]
    assert not left, f"still running after sandbox down: {left}"


async def poll(
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Await ``probe()`` until ``predicate`` holds; ``TimeoutError`` names ``what`` and the
    last value. (``interval`` is a polling period, never a synchronisation sleep.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still {value!r} after {timeout}s")
        await asyncio.sleep(interval)


async def query(prometheus_url: str, promql: str) -> float | None:
    from sandbox import prometheus

    return await asyncio.to_thread(prometheus.query, prometheus_url, promql)


async def get_json(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with http.get(url, timeout=HTTP, **kwargs) as resp:
        body = await resp.read()
    try:
        data = json.loads(body)
    except ValueError:
        data = {"raw": body[:200].decode(errors="replace")}
    return resp.status, data if isinstance(data, dict) else {"raw": data}


async def load(
    url: str,
    total: int | None = None,
    stop: asyncio.Event | None = None,
    concurrency: int = 16,
    host: str = "app.example.com",
) -> collections.Counter[tuple[int, str]]:
    """GETs with ``concurrency`` workers, ``total`` of them or until ``stop`` is set; counts
    (status, hostname of the answering pod; "" when the body names none)."""
    counts: collections.Counter[tuple[int, str]] = collections.Counter()
    sent = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal sent
            while (total is None or sent < total) and not (stop is not None and stop.is_set()):
                sent += 1
                status, body = await get_json(http, url, headers={"Host": host})
                counts[(status, str(body.get("hostname", "")))] += 1

        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
    return counts


def direct_urlopen(url: str, timeout: float = 5.0) -> bytes:
    """GET without any proxy (the test process's own environment may have one)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return bytes(resp.read())


# What Sluice says on the bus, searched for the tests' secrets at the end of the session
# (tests/conftest.py): every event and dead letter (replayed from their streams when the stack
# stops), every delivery result, and every reply to a command or a control request. Command and
# control requests themselves are not recorded: a recording subscriber on their subjects would
# count as a responder and hide "no responders" from the tests that expect it.
REPLAYED_STREAMS = (("SLUICE_EVENTS", "sluice.events.>"), ("SLUICE_DEAD", "sluice.dead.>"))
RECORDER_TIMEOUT_S = 10.0


def secret_url(url: str, name: str) -> str:
    """``url`` carrying credentials the way webhook and chat URLs do — a user and password, and a
    ``token`` query parameter — with the password and the token registered as secrets: the
    session fails if a service log, an event, a dead letter, a delivery result or a reply
    shows either (``tests/conftest.py``)."""
    scheme, _, rest = url.partition("://")
    password = services.secret(f"{name}-password-7c1e")
    token = services.secret(f"{name}-token-4b9d")
    separator = "&" if "?" in rest else "?"
    return f"{scheme}://hook-user:{password}@{rest}{separator}token={token}"


def is_reply(data: bytes) -> bool:
    """A Sluice reply (to a command or a control request), not other inbox traffic (JetStream
    API answers, KV reads, pulled messages)."""
    try:
        messages.REPLY_DECODER.decode(data)
    except Exception:  # whatever does not decode is not a reply
        return False
    return True


class BusRecorder:
    """Records what ``REPLAYED_STREAMS`` hold and every delivery result and reply on the stack's
    NATS, from a thread of its own (the stack fixture has no event loop)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bus-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(RECORDER_TIMEOUT_S) or self._error is not None:
            self.stop()
            raise AssertionError(f"the bus recorder did not start: {self._error!r}")

    def stop(self) -> None:
        """Replay the streams, then stop; a failure to record fails the fixture."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(RECORDER_TIMEOUT_S * 4)
        assert not self._thread.is_alive(), "the bus recorder did not stop"
        assert self._error is None, f"the bus recorder failed: {self._error!r}"

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._record())
        except BaseException as exc:  # reported by start() or stop()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    def _keep(self, subject: str, data: bytes) -> None:
        self.count += 1
        services.record_message(subject, data)

    async def _record(self) -> None:
        self._stop = asyncio.Event()

        async def delivery(msg: Msg) -> None:
            self._keep(msg.subject, msg.data)

        async def inbox(msg: Msg) -> None:
            if not msg.reply and is_reply(msg.data):
                self._keep(f"a reply on {msg.subject}", msg.data)

        nc = await nats.connect(self.url, connect_timeout=RECORDER_TIMEOUT_S)
        try:
            await nc.subscribe("sluice.deliveries.>", cb=delivery)
            await nc.subscribe("_INBOX.>", cb=inbox)
            await nc.flush(timeout=int(RECORDER_TIMEOUT_S))
            self._ready.set()
            await self._stop.wait()
            for stream, subjects in REPLAYED_STREAMS:
                await self._replay(nc, stream, subjects)
        finally:
            await nc.close()

    async def _replay(self, nc: nats.aio.client.Client, stream: str, subjects: str) -> None:
        js = nc.jetstream(timeout=RECORDER_TIMEOUT_S)
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return  # never declared: nothing to search
        if not info.state.messages:
            return
        sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True)
        try:
            while True:
                msg = await sub.next_msg(timeout=RECORDER_TIMEOUT_S)
                self._keep(msg.subject, msg.data)
                if not msg.metadata.num_pending:
                    return
        finally:
            await sub.unsubscribe()

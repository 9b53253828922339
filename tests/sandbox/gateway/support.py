"""Test helpers shared by the gateway and name proxy suites: a tiny REST client for the
simulated API server and small aiohttp backends standing in for pods."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from typing import Any

import aiohttp
from aiohttp import web

Obj = dict[str, Any]
TIMEOUT = aiohttp.ClientTimeout(total=10)


class KubeApi:
    """create / patch / delete over the API server's REST interface (what kubectl does)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    @staticmethod
    def _collection(obj: Obj) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural = {
            "Service": "services",
            "Endpoints": "endpoints",
            "Namespace": "namespaces",
            "ApisixRoute": "apisixroutes",
        }[kind]
        prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        namespace = obj["metadata"].get("namespace")
        if kind == "Namespace" or namespace is None:
            return f"{prefix}/{plural}"
        return f"{prefix}/namespaces/{namespace}/{plural}"

    async def create(self, obj: Obj) -> Obj:
        async with self.session.post(
            self.base_url + self._collection(obj), json=obj, timeout=TIMEOUT
        ) as resp:
            body = await resp.json()
            assert resp.status == 201, body
            return body  # type: ignore[no-any-return]

    async def ensure_namespace(self, name: str) -> None:
        async with self.session.post(
            self.base_url + "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            timeout=TIMEOUT,
        ) as resp:
            assert resp.status in (201, 409), await resp.text()

    async def merge_patch(self, obj: Obj, patch: Obj) -> Obj:
        url = f"{self.base_url}{self._collection(obj)}/{obj['metadata']['name']}"
        async with self.session.patch(
            url,
            data=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=TIMEOUT,
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return body  # type: ignore[no-any-return]

    async def replace(self, obj: Obj) -> Obj:
        url = f"{self.base_url}{self._collection(obj)}/{obj['metadata']['name']}"
        async with self.session.get(url, timeout=TIMEOUT) as resp:
            live = await resp.json()
        obj = {
            **obj,
            "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]},
        }
        async with self.session.put(url, json=obj, timeout=TIMEOUT) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return body  # type: ignore[no-any-return]

    async def delete(self, obj: Obj) -> None:
        url = f"{self.base_url}{self._collection(obj)}/{obj['metadata']['name']}"
        async with self.session.delete(url, timeout=TIMEOUT) as resp:
            assert resp.status in (200, 202), await resp.text()


@dataclasses.dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


class Backend:
    """A pod stand-in on ``<ip>:<free port>``: answers ``{"backend": name, ...}``.

    ``fail_every=(3, 10)`` answers 500 to requests number 0, 1, 2 of every 10 (deterministic
    30%); ``delay`` (seconds) is slept before answering; every request is kept in ``seen``."""

    def __init__(
        self,
        name: str,
        ip: str = "127.0.0.1",
        delay: float = 0.0,
        fail_every: tuple[int, int] | None = None,
    ) -> None:
        self.name, self.ip, self.delay, self.fail_every = name, ip, delay, fail_every
        self.count = 0
        self.seen: list[Seen] = []
        self.port = 0
        self._runner: web.ServerRunner | None = None

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        number = self.count
        self.count += 1
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)  # the simulated service time, not synchronisation
        status = 200
        if self.fail_every and number % self.fail_every[1] < self.fail_every[0]:
            status = 500
        return web.json_response(
            {"backend": self.name, "n": number, "host": request.headers.get("Host")},
            status=status,
            headers={
                "X-Backend": self.name,
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "hop",
            },
        )

    async def __aenter__(self) -> Backend:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.ip, 0))
        sock.listen(256)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._runner = web.ServerRunner(
            web.Server(self._handle, access_log=None), shutdown_timeout=1
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def closed_port(ip: str = "127.0.0.1") -> int:
    """A port nothing listens on (picked free, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


async def run_requests(
    session: aiohttp.ClientSession,
    url: str,
    n: int,
    concurrency: int = 64,
    headers: dict[str, str] | None = None,
) -> list[tuple[int, str]]:
    """``n`` GETs with bounded concurrency; (status, X-Backend header) per request."""
    results: list[tuple[int, str]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            async with session.get(url, headers=headers, timeout=TIMEOUT) as resp:
                await resp.read()
                results.append((resp.status, resp.headers.get("X-Backend", "")))

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    return results

"""Local HTTP servers for the load generator's tests: a target that records what arrives and a
forward proxy that answers every request itself (so a test can tell proxied from direct).

Both listen on 127.0.0.1 port 0. Nothing waits with sleeps: a test waits on ``Target.reached``
(set when a given number of requests arrived) or holds requests at ``/barrier`` until enough
are in flight at once. Proxy variables are removed from the environment for every test here,
so a developer's ``HTTP_PROXY`` (the sandbox sets one) cannot reroute local requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
BODY = b"hello world"
BARRIER_TIMEOUT_S = 10.0


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer_port: int


class Target:
    """Routes: ``/`` answers ``BODY``; ``/hang`` never answers (until teardown); ``/redirect``
    answers 302 to ``/``; ``/barrier`` holds each request until ``barrier`` requests are in
    flight together; ``/gzip`` answers ``BODY`` gzip-compressed when asked."""

    def __init__(self) -> None:
        self.base = ""
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.barrier = 1
        self.barrier_open = asyncio.Event()
        self.release = asyncio.Event()
        self.reached = asyncio.Event()
        self.notify_at = 0  # set ``reached`` once this many requests arrived

    def url(self, path: str = "/") -> str:
        return self.base + path

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=await request.read(),
                peer_port=peer[1] if peer else 0,
            )
        )
        if self.notify_at and len(self.seen) >= self.notify_at:
            self.reached.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/hang":
            await self.release.wait()
        elif request.path == "/redirect":
            raise web.HTTPFound("/")
        elif request.path == "/barrier":
            if self.in_flight >= self.barrier:
                self.barrier_open.set()
            async with asyncio.timeout(BARRIER_TIMEOUT_S):
                await self.barrier_open.wait()
        elif request.path == "/gzip":
            response = web.Response(body=BODY * 100)
            response.enable_compression()
            return response
        return web.Response(body=BODY)


async def _serve(handler: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(handler, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    server = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner, port = await _serve(app)
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        server.barrier_open.set()
        await runner.cleanup()


class Proxy:
    """A forward proxy that answers every request with 200 "proxied" instead of forwarding."""

    def __init__(self) -> None:
        self.address = ""  # host:port
        self.targets: list[str] = []  # the absolute URLs asked for

    async def handle(self, request: web.Request) -> web.Response:
        self.targets.append(request.raw_path)
        return web.Response(text="proxied")


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    server = Proxy()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner, port = await _serve(app)
    server.address = f"127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()

"""Local HTTP endpoints for the notifier's provider tests: a sink that records what it is sent
and answers as scripted, and a forward proxy that counts what passes through it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from services.notifier.providers import delivery


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the endpoint received it; ``at`` is the event loop's clock."""

    method: str
    target: str  # the request target: a path, or an absolute URL when sent to a proxy
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class Endpoint:
    """Records every request; answers with the scripted replies in order, then ``default``;
    with ``hang`` set it never answers (until the test ends)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.replies: list[Reply] = []
        self.default = Reply()
        self.hang = False
        self.release = asyncio.Event()
        self.base = ""

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def url(self, path: str = "/hook") -> str:
        return self.base + path

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            Seen(
                method=request.method,
                target=request.raw_path,
                path=request.path,
                query=request.query_string,
                headers=dict(request.headers),
                body=body,
                at=asyncio.get_running_loop().time(),
            )
        )
        if self.hang:
            await self.release.wait()
        reply = self.replies.pop(0) if self.replies else self.default
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)


async def _serve() -> tuple[Endpoint, web.AppRunner]:
    endpoint = Endpoint()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", endpoint.handle)
    # no access log: it would print request paths, which the secret tests look for
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return endpoint, runner


@pytest.fixture
async def sink() -> AsyncIterator[Endpoint]:
    """A chat provider stand-in on a free local port."""
    endpoint, runner = await _serve()
    try:
        yield endpoint
    finally:
        endpoint.release.set()
        await runner.cleanup()


@pytest.fixture
async def proxy() -> AsyncIterator[Endpoint]:
    """A forward proxy stand-in: it answers every proxied request itself (200), so a target on
    an unresolvable host is reached only through it. ``seen[i].target`` is the absolute URL."""
    endpoint, runner = await _serve()
    try:
        yield endpoint
    finally:
        endpoint.release.set()
        await runner.cleanup()


SenderFactory = Callable[..., delivery.Sender]


@pytest.fixture
async def make_sender() -> AsyncIterator[SenderFactory]:
    """Senders with test-sized backoff, all closed at the end."""
    made: list[delivery.Sender] = []

    def factory(**kwargs: Any) -> delivery.Sender:
        kwargs.setdefault("backoff_base_s", 0.01)
        kwargs.setdefault("backoff_max_s", 0.02)
        sender = delivery.Sender(**kwargs)
        made.append(sender)
        return sender

    try:
        yield factory
    finally:
        for sender in made:
            await sender.close()

"""The podinfo-like app over real loopback sockets."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from sandbox.app import PodApp

pytestmark = pytest.mark.integration

IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.1"


@pytest.fixture
def host() -> str:
    return f"127.{random.randint(100, 250)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@pytest.fixture
async def serve(host: str) -> AsyncIterator[Callable[..., object]]:
    apps: list[PodApp] = []

    async def start(
        env: dict[str, str] | None = None, args: list[str] | None = None, **kw: object
    ) -> str:
        container = {
            "image": IMAGE,
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
            "args": args or [],
        }
        app = PodApp(container, hostname="pod-1", rng=random.Random(7), **kw)  # type: ignore[arg-type]
        apps.append(app)
        await app.start(host, 9898)
        return f"http://{host}:9898"

    yield start
    for app in apps:
        await app.stop()


async def status_of(session: aiohttp.ClientSession, url: str, method: str = "GET") -> int:
    async with session.request(method, url) as response:
        await response.read()
        return response.status


async def test_info_version_and_probes(serve, session: aiohttp.ClientSession) -> None:
    base = await serve()
    for path in ("/", "/api/info"):
        async with session.get(base + path) as r:
            info = await r.json()
        assert info["version"] == "6.0.1"
        assert info["hostname"] == "pod-1"
        assert {"revision", "color", "message", "goos", "runtime"} <= set(info)
    async with session.get(base + "/version") as r:
        assert (await r.json())["version"] == "6.0.1"
    assert await status_of(session, base + "/healthz") == 200
    assert await status_of(session, base + "/readyz") == 200
    assert await status_of(session, base + "/readyz/disable", "POST") == 202
    assert await status_of(session, base + "/readyz") == 503
    assert await status_of(session, base + "/readyz/enable", "POST") == 202
    assert await status_of(session, base + "/readyz") == 200
    assert await status_of(session, base + "/status/418") == 418
    assert await status_of(session, base + "/status/abc") == 400
    async with session.get(base + "/delay/0") as r:
        assert await r.json() == {"delay": 0}
    async with session.get(base + "/metrics") as r:
        assert 'http_requests_total{method="GET",path="/api/info",status="200"} 1' in await r.text()


async def test_never_ready(serve, session: aiohttp.ClientSession) -> None:
    base = await serve(env={"SANDBOX_NEVER_READY": "1"})
    assert await status_of(session, base + "/readyz") == 503
    assert await status_of(session, base + "/readyz/enable", "POST") == 202
    assert await status_of(session, base + "/readyz") == 503
    assert await status_of(session, base + "/healthz") == 200


async def test_error_rate_spares_probes(serve, session: aiohttp.ClientSession) -> None:
    base = await serve(env={"SANDBOX_ERROR_RATE": "1"})
    assert await status_of(session, base + "/api/info") == 500
    assert await status_of(session, base + "/status/200") == 500
    assert await status_of(session, base + "/readyz") == 200
    assert await status_of(session, base + "/healthz") == 200


async def test_podinfo_random_error_codes(serve, session: aiohttp.ClientSession) -> None:
    base = await serve(args=["--random-error=true"])
    codes = [await status_of(session, base + "/api/info") for _ in range(150)]
    assert set(codes) == {200, 500, 400, 409}
    assert 25 <= len([c for c in codes if c != 200]) <= 75  # 1 in 3


async def test_latency_and_bounded_delay(serve, session: aiohttp.ClientSession) -> None:
    base = await serve(env={"SANDBOX_LATENCY_MS": "200"}, max_delay_s=0.1)
    start = time.monotonic()
    assert await status_of(session, base + "/api/info") == 200
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    assert await status_of(session, base + "/readyz") == 200
    assert time.monotonic() - start < 0.2  # probes are not delayed
    start = time.monotonic()
    async with session.get(base + "/delay/60") as r:
        assert (await r.json()) == {"delay": 60}
    assert time.monotonic() - start < 5  # bounded by max_delay_s


async def test_stop_closes_the_socket_even_with_a_request_in_flight(serve, host: str) -> None:
    app = PodApp({"image": IMAGE}, shutdown_timeout_s=0.2)
    await app.start(host, 9898)
    await app.start(host, 9797)
    async with aiohttp.ClientSession() as s:
        pending = asyncio.ensure_future(s.get(f"http://{host}:9898/delay/30"))
        await asyncio.sleep(0.1)
        await app.stop()
        with pytest.raises(aiohttp.ClientError):
            await pending
    for port in (9898, 9797):
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, port)
    await app.stop()  # idempotent

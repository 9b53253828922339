"""The list + watch client against a scripted fake API server: paging, events, bookmarks,
410 / ERROR → relist, dropped streams → resume, errors → backoff; kubeconfig parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from sandbox import kubewatch

FAST = kubewatch.WatchSettings(backoff_initial=0.01, backoff_max=0.05, read_timeout=5, page_size=2)


def svc(name: str, rv: str, ns: str = "test") -> dict:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv}}


class FakeApi:
    """Lists ``items``; each watch request pops the next script: a status code, or a list of
    events to stream (then the stream ends)."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.rv = "10"
        self.watch_scripts: list[int | list[dict]] = []
        self.requests: list[dict[str, str]] = []
        self.list_status = 200
        self.watch_open = asyncio.Event()
        self.requested = asyncio.Event()  # set on every request
        self.closing = asyncio.Event()  # set at teardown: idle watches end

    async def handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        self.requests.append(params)
        self.requested.set()
        if params.get("watch") != "1":
            if self.list_status != 200:
                return web.json_response(
                    {"kind": "Status", "code": self.list_status}, status=self.list_status
                )
            start = int(params.get("continue") or 0)
            limit = int(params.get("limit") or 500)
            page = self.items[start : start + limit]
            meta = {"resourceVersion": self.rv}
            if start + limit < len(self.items):
                meta["continue"] = str(start + limit)
            return web.json_response({"kind": "ServiceList", "metadata": meta, "items": page})
        if not self.watch_scripts:
            self.watch_open.set()
            await self.closing.wait()  # an idle watch, ended at teardown
            return web.Response(status=503)
        script = self.watch_scripts.pop(0)
        if isinstance(script, int):
            return web.json_response({"kind": "Status", "code": script}, status=script)
        resp = web.StreamResponse()
        await resp.prepare(request)
        for event in script:
            await resp.write(json.dumps(event).encode() + b"\n")
        return resp


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeApi, str]]:
    api = FakeApi()
    app = web.Application()
    app.router.add_get("/api/v1/services", api.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield api, f"http://127.0.0.1:{port}"
    api.closing.set()
    await runner.cleanup()


async def run_until(
    informer: kubewatch.Informer, predicate, timeout: float = 5.0, idle: asyncio.Event | None = None
) -> None:
    """Run the informer until ``predicate()`` holds after a change (and ``idle`` is set)."""
    changed = asyncio.Event()
    informer.on_change = lambda _i: changed.set()
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                changed.clear()
                await changed.wait()
            if idle is not None:
                await idle.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_pages_then_applies_events_and_bookmarks(fake):
    api, url = fake
    api.items = [svc("a", "1"), svc("b", "2"), svc("c", "3")]
    api.watch_scripts = [
        [
            {"type": "ADDED", "object": svc("d", "11")},
            {"type": "MODIFIED", "object": svc("a", "12") | {"spec": {"x": 1}}},
            {"type": "DELETED", "object": svc("b", "13")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
        ]
    ]
    async with aiohttp.ClientSession() as session:
        informer = kubewatch.Informer(session, url, kubewatch.SERVICES, settings=FAST)
        await run_until(
            informer,
            lambda: len(informer.cache) == 3 and ("test", "d") in informer.cache,
            idle=api.watch_open,
        )
    assert informer.resource_version == "20"
    assert sorted(informer.cache) == [("test", "a"), ("test", "c"), ("test", "d")]
    assert informer.cache[("test", "a")]["spec"] == {"x": 1}
    lists = [r for r in api.requests if "watch" not in r]
    assert [r.get("continue") for r in lists] == [None, "2"]
    watches = [r for r in api.requests if r.get("watch") == "1"]
    assert watches[0]["resourceVersion"] == "10"
    assert watches[0]["allowWatchBookmarks"] == "true"
    assert int(watches[0]["timeoutSeconds"]) >= 300
    # After the first stream ended, the next watch resumed from the bookmark's version.
    assert watches[1]["resourceVersion"] == "20"


@pytest.mark.parametrize(
    "failure", [410, [{"type": "ERROR", "object": {"kind": "Status", "code": 410}}]]
)
async def test_gone_or_error_event_relists(fake, failure):
    api, url = fake
    api.items = [svc("a", "1")]
    api.watch_scripts = [failure]
    async with aiohttp.ClientSession() as session:
        informer = kubewatch.Informer(session, url, kubewatch.SERVICES, settings=FAST)

        def relisted() -> bool:
            if informer.lists == 1:
                api.items = [svc("z", "30")]  # the world moved on while the watch was gone
            return informer.lists >= 2

        await run_until(informer, relisted)
    assert list(informer.cache) == [("test", "z")]


async def test_list_errors_back_off_and_retry(fake):
    """A CRD not installed yet answers 404: keep trying, become synced once it is there."""
    api, url = fake
    api.list_status = 404
    api.items = [svc("a", "1")]
    async with aiohttp.ClientSession() as session:
        informer = kubewatch.Informer(session, url, kubewatch.SERVICES, settings=FAST)
        task = asyncio.create_task(informer.run())
        try:
            async with asyncio.timeout(5):
                while len(api.requests) < 3:
                    api.requested.clear()
                    await api.requested.wait()
                assert not informer.synced.is_set()
                api.list_status = 200
                await informer.synced.wait()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert list(informer.cache) == [("test", "a")]


async def test_unreachable_server_is_retried():
    async with aiohttp.ClientSession() as session:
        informer = kubewatch.Informer(
            session, "http://127.0.0.1:1", kubewatch.SERVICES, settings=FAST
        )
        task = asyncio.create_task(informer.run())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await informer.synced.wait()
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_server_from_kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: b\n"
        "contexts:\n- name: a\n  context: {cluster: one}\n- name: b\n  context: {cluster: two}\n"
        "clusters:\n- name: one\n  cluster: {server: 'http://127.0.0.1:1'}\n"
        "- name: two\n  cluster: {server: 'http://127.0.0.1:2/'}\n"
    )
    assert kubewatch.server_from_kubeconfig(path) == "http://127.0.0.1:2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("current-context: x\ncontexts: []\n", "current-context 'x'"),
        (
            "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\nclusters: []\n",
            "no server",
        ),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_bad_kubeconfig(tmp_path, text, message):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(kubewatch.KubeconfigError, match=message):
        kubewatch.server_from_kubeconfig(path)


def test_missing_kubeconfig(tmp_path):
    with pytest.raises(kubewatch.KubeconfigError, match="cannot read"):
        kubewatch.server_from_kubeconfig(tmp_path / "nope")

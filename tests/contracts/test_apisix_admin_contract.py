"""APISIX Admin API contracts: request/response pairs taken from APISIX's documentation (and
its test suite), replayed against the sandbox's Admin API and through Sluice's adapter.

Each ``apisix_admin/*.json`` holds the doc URL and APISIX version, the requests that set the
scene (``setup``), the request, the answer APISIX gives (status and body), the fields whose
values change from run to run (``volatile``: times, etcd indexes; they must be there, their
values are not compared) and, for some, a follow-up request (``then``). Both sides are held to
the same pairs, so the simulator and the adapter cannot drift apart unnoticed:

* the raw HTTP answer of the sandbox must have the status and the body (with
  ``exact_keys``: exactly the documented fields; otherwise at least them);
* ``libs.adapters.apisix_admin`` must turn the same request into the same value, or into the
  error its module doc promises for that status.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from libs import errors
from libs.adapters import apisix_admin
from sandbox.gateway.app import Gateway

pytestmark = pytest.mark.integration

CONTRACTS = pathlib.Path(__file__).parent / "apisix_admin"
KEY = "contract-admin-key-0d5c"
TIMEOUT = aiohttp.ClientTimeout(total=10)


def contracts() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(CONTRACTS.glob("*.json"))]


CASES = contracts()
IDS = [c["name"].replace(" ", "-") for c in CASES]


# ----------------------------------------------------------------------------- comparison


def mismatches(
    actual: Any, expected: Any, volatile: set[str], exact: bool, path: str = ""
) -> list[str]:
    """Where ``actual`` breaks the documented ``expected`` (paths like ``list[].value.id``)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '$'}: expected an object, got {actual!r}"]
        found = []
        prefix = f"{path}." if path else ""
        here = {v[len(prefix) :] for v in volatile if v.startswith(prefix)}
        here = {v for v in here if "." not in v and "[" not in v}
        for key in here:
            if key not in actual:
                found.append(f"{prefix}{key}: missing")
        if exact:
            extra = set(actual) - set(expected) - here
            found += [f"{prefix}{key}: not documented" for key in sorted(extra)]
        for key, value in expected.items():
            if key in here:
                continue
            if key not in actual:
                found.append(f"{prefix}{key}: missing")
                continue
            found += mismatches(actual[key], value, volatile, exact, f"{prefix}{key}")
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        found = []
        for a, e in zip(actual, expected, strict=True):
            found += mismatches(a, e, volatile, exact, f"{path}[]")
        return found
    if actual != expected:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def _strip(volatile: list[str], prefix: str) -> set[str]:
    return {v[len(prefix) :] for v in volatile if v.startswith(prefix)}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(None, admin_key=KEY) as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[apisix_admin.AdminApi]:
    client = apisix_admin.AdminApi(
        apisix_admin.AdminConfig(url=gateway.admin_url, api_key=KEY, retries=0)
    )
    try:
        yield client
    finally:
        await client.close()


async def send(
    http: aiohttp.ClientSession, gw: Gateway, request: dict[str, Any]
) -> tuple[int, Any]:
    key = KEY if request.get("api_key", "valid") == "valid" else request["api_key"]
    body = request.get("body")
    async with http.request(
        request["method"],
        gw.admin_url + request["path"],
        headers={"X-API-KEY": key},
        data=None if body is None else json.dumps(body),
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def set_scene(http: aiohttp.ClientSession, gw: Gateway, case: dict[str, Any]) -> None:
    for request in case["setup"]:
        status, body = await send(http, gw, request)
        assert status in (200, 201), f"setup {request['method']} {request['path']}: {body}"


# ----------------------------------------------------------------------------- the simulator


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_simulator_answers_as_documented(
    case: dict[str, Any], gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    await set_scene(http, gateway, case)
    status, body = await send(http, gateway, case["request"])
    expected = case["response"]
    assert status == expected["status"], body
    wrong = mismatches(body, expected["body"], set(case["volatile"]), case["exact_keys"])
    assert not wrong, f"{case['doc']}: {wrong}"
    if "then" in case:
        then = case["then"]
        status, body = await send(http, gateway, then["request"])
        assert status == then["response"]["status"], body
        assert not mismatches(body, then["response"]["body"], set(), False)


# ----------------------------------------------------------------------------- the adapter


def _route(path: str) -> tuple[str, str, str]:
    parts = path.removeprefix(apisix_admin.PREFIX + "/").split("/", 2)
    return parts[0], (parts[1] if len(parts) > 1 else ""), (parts[2] if len(parts) > 2 else "")


async def call(api: apisix_admin.AdminApi, request: dict[str, Any]) -> Any:
    kind, item, sub = _route(request["path"])
    assert kind in ("routes", "upstreams")
    match request["method"]:
        case "GET" if not item:
            return await api.list(kind)  # type: ignore[arg-type]
        case "GET":
            return await api.get(kind, item)  # type: ignore[arg-type]
        case "PUT":
            return await api.put(kind, item, request["body"])  # type: ignore[arg-type]
        case "PATCH":
            return await api.patch(kind, item, request["body"], path=sub)  # type: ignore[arg-type]
        case "DELETE":
            return await api.delete(kind, item)  # type: ignore[arg-type]
    raise AssertionError(request["method"])


def as_answer(resource: apisix_admin.Resource) -> dict[str, Any]:
    answer: dict[str, Any] = {"key": resource.key, "value": resource.value}
    if resource.created_index is not None:
        answer["createdIndex"] = resource.created_index
    if resource.modified_index is not None:
        answer["modifiedIndex"] = resource.modified_index
    return answer


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_adapter_reads_the_documented_answer(
    case: dict[str, Any], gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    await set_scene(http, gateway, case)
    request = case["request"]
    key = KEY if request.get("api_key", "valid") == "valid" else request["api_key"]
    api = apisix_admin.AdminApi(
        apisix_admin.AdminConfig(url=gateway.admin_url, api_key=key, retries=0)
    )
    expected = case["response"]
    status = expected["status"]
    volatile = set(case["volatile"])
    try:
        if status >= 400:
            error_type: type[errors.SluiceError] = {
                400: errors.InvalidInput,
                401: errors.PermanentError,
                404: errors.NotFound,
            }[status]
            with pytest.raises(error_type) as caught:
                await call(api, request)
            text = str(caught.value)
            assert not caught.value.temporary
            if status == 400:
                assert expected["body"]["error_msg"] in text
            if status == 401:
                assert type(caught.value) is errors.PermanentError
                assert apisix_admin.KEY_SETTING in text
                assert key not in text
            return
        result = await call(api, request)
        body = expected["body"]
        if request["method"] == "DELETE":
            assert result is None
        elif isinstance(result, list):
            answers = [as_answer(r) for r in result]
            assert not mismatches(answers, body["list"], _strip(list(volatile), "list"), True)
            assert len(result) == body["total"]
        else:
            wrong = mismatches(as_answer(result), body, volatile, case["exact_keys"])
            assert not wrong, wrong
    finally:
        await api.close()


# ----------------------------------------------------------------------------- transport


async def test_adapter_reads_indexes_that_grow_with_writes(api: apisix_admin.AdminApi) -> None:
    await api.put("upstreams", "u1", {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}})
    first = await api.get("upstreams", "u1")
    await api.patch("upstreams", "u1", {"127.0.0.1:1981": 1}, path="nodes")
    second = await api.get("upstreams", "u1")
    assert first.created_index == second.created_index
    assert first.modified_index is not None
    assert second.modified_index is not None
    assert second.modified_index > first.modified_index
    assert second.value["nodes"] == {"127.0.0.1:1981": 1}
    await api.delete("upstreams", "u1")
    assert await api.list("upstreams") == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_admin_api_is_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    api = apisix_admin.AdminApi(apisix_admin.AdminConfig(url=url, api_key=KEY, retries=1))
    try:
        with pytest.raises(errors.Unavailable) as caught:
            await api.get("routes", "r1")
    finally:
        await api.close()
    assert url in str(caught.value)
    assert KEY not in str(caught.value)


class FakeAdmin:
    """A stand-in for a misbehaving Admin API: answers ``statuses`` in turn, then holds."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.seen = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen += 1
        if self.statuses:
            status = self.statuses.pop(0)
            if status == 200:
                return web.json_response({"key": "/apisix/routes/r1", "value": {"id": "r1"}})
            return web.json_response({"error_msg": "etcd is down"}, status=status)
        await self.release.wait()
        return web.json_response({})


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeAdmin, str]]:
    admin = FakeAdmin([])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", admin.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield admin, f"http://127.0.0.1:{port}"
    finally:
        admin.release.set()
        await runner.cleanup()


async def test_server_errors_are_retried_then_unavailable(fake: tuple[FakeAdmin, str]) -> None:
    admin, url = fake
    admin.statuses = [503, 502, 200]
    api = apisix_admin.AdminApi(apisix_admin.AdminConfig(url=url, api_key=KEY, retries=2))
    try:
        assert (await api.get("routes", "r1")).value == {"id": "r1"}
        assert admin.seen == 3
        admin.statuses = [503, 503]
        api.config = apisix_admin.AdminConfig(url=url, api_key=KEY, retries=1)
        with pytest.raises(errors.Unavailable, match="503: etcd is down"):
            await api.get("routes", "r1")
    finally:
        await api.close()


async def test_a_silent_admin_api_times_out(fake: tuple[FakeAdmin, str]) -> None:
    _admin, url = fake
    api = apisix_admin.AdminApi(
        apisix_admin.AdminConfig(url=url, api_key=KEY, timeout_s=0.2, retries=0)
    )
    try:
        with pytest.raises(errors.Timeout, match=r"did not answer within 0\.2s"):
            await api.get("routes", "r1")
    finally:
        await api.close()


def test_read_key(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "admin-key"
    path.write_text("  s3cret-key\n")
    assert apisix_admin.read_key(path) == "s3cret-key"
    path.write_text("\n")
    with pytest.raises(errors.InvalidInput, match=rf"{apisix_admin.KEY_SETTING}: .* is empty"):
        apisix_admin.read_key(path)
    with pytest.raises(errors.InvalidInput, match=r"cannot read .*missing"):
        apisix_admin.read_key(tmp_path / "missing")


def test_bad_config_names_the_field() -> None:
    with pytest.raises(errors.InvalidInput, match="timeout_s: expected a positive"):
        apisix_admin.AdminApi(apisix_admin.AdminConfig(url="http://x", api_key="k", timeout_s=0))
    with pytest.raises(errors.InvalidInput, match="url: expected http"):
        apisix_admin.AdminApi(apisix_admin.AdminConfig(url="apisix:9180", api_key="k"))
    assert "secret" not in repr(apisix_admin.AdminConfig(url="http://x", api_key="secret"))

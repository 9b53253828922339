"""The gateway's Admin API (APISIX standalone): every verb and envelope, APISIX's refusals, and
routes set through it served by the data plane (traffic-split, vars, node weights, metrics)."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.gateway import Gateway
from sandbox.kube.cluster import Cluster
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.support import TIMEOUT, Backend, KubeApi

pytestmark = pytest.mark.integration

KEY = "edd1c9f034335f136f87ad84b625c8f1"


class Admin:
    """A small Admin API client: ``call`` returns (status, JSON body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str | None = KEY) -> None:
        self.session, self.url, self.key = session, url + "/apisix/admin", key

    async def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"X-API-KEY": self.key} if self.key else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        async with self.session.request(
            method, self.url + path, data=data, headers=headers, timeout=TIMEOUT
        ) as resp:
            assert resp.headers["X-API-VERSION"] == "v3"
            return resp.status, await resp.json()

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, answer = await self.call(method, path, body)
        assert got == status, answer
        return answer


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    async with Gateway(None, admin_key=KEY) as gateway:
        yield gateway


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(gw: Gateway, http: aiohttp.ClientSession) -> Admin:
    return Admin(http, gw.admin_url)


async def counts(
    http: aiohttp.ClientSession, url: str, n: int, headers: dict[str, str] | None = None
) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        async with http.get(url, headers=headers, timeout=TIMEOUT) as resp:
            await resp.read()
            seen[resp.headers.get("X-Backend", str(resp.status))] += 1
    return seen


def status_samples(text: str) -> dict[tuple[str, str], float]:
    """apisix_http_status: (route, node) → count."""
    out: dict[tuple[str, str], float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(text):
        if family.name == "apisix_http_status":
            for s in family.samples:
                out[(s.labels["route"], s.labels["node"])] += s.value
    return dict(out)


# -- authentication and errors of the API itself ---------------------------------------------


async def test_admin_key_is_required(gw: Gateway, http: aiohttp.ClientSession):
    for key, description in ((None, "missing apikey"), ("nope", "wrong apikey")):
        status, body = await Admin(http, gw.admin_url, key).call("GET", "/routes")
        assert status == 401
        assert body == {"error_msg": "failed to check token", "description": description}
    async with http.get(
        f"{gw.admin_url}/apisix/admin/routes?api_key={KEY}", timeout=TIMEOUT
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"list": [], "total": 0}


async def test_unknown_resources_bad_json_and_missing_keys(api: Admin):
    assert await api.call("GET", "/services") == (
        404,
        {"error_msg": "Unsupported resource type: services"},
    )
    status, body = await api.call("PUT", "/upstreams/1", raw=b"{nope")
    assert status == 400
    assert body["error_msg"].startswith("invalid request body: ")
    for method in ("GET", "DELETE"):
        status, body = await api.call(method, "/routes/missing")
        assert status == 404
        assert body["error_msg"] == body["message"] == "Key not found"
    assert await api.call("PATCH", "/routes/missing", {"desc": "x"}) == (
        404,
        {"message": "Key not found", "error_msg": "Key not found"},
    )


# -- upstreams: every verb -------------------------------------------------------------------


async def test_upstream_put_get_list_patch_delete(api: Admin):
    created = await api.ok(
        "PUT", "/upstreams/stable", {"nodes": {"127.0.0.1:1980": 1}, "desc": "v1"}, status=201
    )
    assert created["key"] == "/apisix/upstreams/stable"
    value = created["value"]
    assert value["id"] == "stable"
    assert value["nodes"] == {"127.0.0.1:1980": 1}
    assert isinstance(value["create_time"], int)
    assert isinstance(value["update_time"], int)

    got = await api.ok("GET", "/upstreams/stable")
    assert got["key"] == "/apisix/upstreams/stable"
    assert got["value"] == value
    assert got["createdIndex"] == got["modifiedIndex"] > 0
    first = got["createdIndex"]

    replaced = await api.ok("PUT", "/upstreams/stable", {"nodes": {"127.0.0.1:1981": 2}})
    assert replaced["value"]["create_time"] == value["create_time"]
    assert "desc" not in replaced["value"]
    got = await api.ok("GET", "/upstreams/stable")
    assert got["createdIndex"] == first
    assert got["modifiedIndex"] > first

    # merge: objects merged, arrays replaced whole, null deletes
    await api.ok("PATCH", "/upstreams/stable", {"desc": "x", "labels": {"a": "1"}})
    patched = await api.ok(
        "PATCH",
        "/upstreams/stable",
        {"labels": {"b": "2"}, "nodes": [{"host": "127.0.0.1", "port": 1982, "weight": 5}]},
    )
    assert patched["value"]["labels"] == {"a": "1", "b": "2"}
    assert patched["value"]["nodes"] == [{"host": "127.0.0.1", "port": 1982, "weight": 5}]
    patched = await api.ok("PATCH", "/upstreams/stable", {"desc": None, "labels": {"a": None}})
    assert "desc" not in patched["value"]
    assert patched["value"]["labels"] == {"b": "2"}

    # sub-path: the body replaces that sub-tree
    patched = await api.ok("PATCH", "/upstreams/stable/nodes", {"127.0.0.1:1983": 3})
    assert patched["value"]["nodes"] == {"127.0.0.1:1983": 3}
    assert patched["value"]["labels"] == {"b": "2"}

    posted = await api.ok("POST", "/upstreams", {"nodes": {"127.0.0.1:1984": 1}}, status=201)
    new_id = posted["value"]["id"]
    assert re.fullmatch(r"\d{20}", new_id)
    assert posted["key"] == f"/apisix/upstreams/{new_id}"

    listed = await api.ok("GET", "/upstreams")
    assert listed["total"] == 2
    assert sorted(e["key"] for e in listed["list"]) == sorted(
        ["/apisix/upstreams/stable", f"/apisix/upstreams/{new_id}"]
    )
    assert all({"key", "value", "createdIndex", "modifiedIndex"} <= set(e) for e in listed["list"])

    assert await api.ok("DELETE", f"/upstreams/{new_id}") == {
        "deleted": "1",
        "key": f"/apisix/upstreams/{new_id}",
    }
    assert (await api.call("GET", f"/upstreams/{new_id}"))[0] == 404


async def test_put_takes_the_id_from_the_body_and_checks_ids(api: Admin):
    await api.ok("PUT", "/upstreams", {"id": "u1", "nodes": {"127.0.0.1:1": 1}}, status=201)
    await api.ok("GET", "/upstreams/u1")
    for method, path, body, message in (
        ("PUT", "/upstreams", {"nodes": {}}, "missing upstream id"),
        ("PUT", "/upstreams/u2", {"id": "u3", "nodes": {}}, "wrong upstream id"),
        ("POST", "/upstreams", {"id": "u4", "nodes": {}}, "wrong upstream id, do not need it"),
        ("POST", "/upstreams/u5", {"nodes": {}}, "wrong upstream id, do not need it"),
        ("PUT", "/upstreams/u6", None, "missing configurations"),
        ("PATCH", "/upstreams/u1", None, "missing new configuration"),
        ("PATCH", "/upstreams", {"nodes": {}}, "missing upstream id"),
        ("DELETE", "/upstreams", None, "missing upstream id"),
        (
            "PUT",
            "/upstreams/u7",
            {"nodes": {}, "create_time": 1},
            "the property is forbidden:  create_time",
        ),
    ):
        assert await api.call(method, path, body) == (400, {"error_msg": message}), (method, path)


# -- refusals naming the field -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            "/upstreams/x",
            {"type": "roundrobin"},
            r'^invalid configuration: value should match only one schema, but matches none - expected "nodes"',
        ),
        (
            "/upstreams/x",
            {"nodes": {"127.0.0.1:80": -1}},
            r'^invalid configuration: property "nodes" validation failed: .*weight of "127.0.0.1:80"',
        ),
        (
            "/upstreams/x",
            {"nodes": [{"host": "127.0.0.1", "port": 80}]},
            r'^invalid configuration: property "nodes" validation failed: .*lacks "weight"',
        ),
        (
            "/upstreams/x",
            {"nodes": {}, "colour": "blue"},
            r"^invalid configuration: additional properties forbidden, found colour$",
        ),
        (
            "/routes/r",
            {"upstream": {"nodes": {"127.0.0.1:80": 1}}},
            r'^invalid configuration: allOf 1 failed: .* expected exactly one of "uri" or "uris"$',
        ),
        (
            "/routes/r",
            {"uri": "/a", "uris": ["/b"], "upstream_id": "u"},
            r"^invalid configuration: allOf 1 failed: value should match only one schema, but matches both",
        ),
        (
            "/routes/r",
            {"uri": "/a"},
            r'^invalid configuration: .* expected "upstream", "upstream_id", "service_id" or "plugins"',
        ),
        (
            "/routes/r",
            {"uri": "/a", "upstream": {"type": "roundrobin"}},
            r'^invalid configuration: property "upstream" validation failed: value should match only one schema, but matches none',
        ),
        (
            "/routes/r",
            {"uri": "/a", "upstream_id": "nope"},
            r"^failed to fetch upstream info by upstream id \[nope\], response code: 404$",
        ),
        (
            "/routes/r",
            {"uri": "/a", "priority": "high", "upstream_id": "u"},
            r'^invalid configuration: property "priority" validation failed: wrong type: expected integer, got string$',
        ),
        (
            "/routes/r",
            {"uri": "/a", "methods": ["GET", "FETCH"], "upstream_id": "u"},
            r'^invalid configuration: property "methods" validation failed: failed to validate item 2: matches none of the enum values$',
        ),
        (
            "/routes/r",
            {"uri": "/a", "host": "a", "hosts": ["b"], "upstream_id": "u"},
            r"^only one of host or hosts is allowed$",
        ),
        (
            "/routes/r",
            {"uri": "/a", "plugins": {"no-such-plugin": {}}, "upstream_id": "u"},
            r"^unknown plugin \[no-such-plugin\]$",
        ),
        (
            "/routes/r",
            {"uri": "/a", "vars": [["http_x", "=", "1"]], "upstream_id": "u"},
            r"^failed to validate the 'vars' expression: invalid operator '='$",
        ),
        (
            "/routes/r",
            {
                "uri": "/a",
                "upstream_id": "u",
                "plugins": {"traffic-split": {"rules": [{"weighted_upstreams": []}]}},
            },
            r'^failed to check the configuration of plugin traffic-split err: property "rules" validation failed: failed to validate item 1: property "weighted_upstreams" validation failed: expect array to have at least 1 items$',
        ),
        (
            "/routes/r",
            {
                "uri": "/a",
                "upstream_id": "u",
                "plugins": {"traffic-split": {"rules": [{"weighted_upstreams": [{"weight": -1}]}]}},
            },
            r'^failed to check the configuration of plugin traffic-split err: .*property "weight" validation failed: expected -1 to be at least 0$',
        ),
        (
            "/routes/r",
            {
                "uri": "/a",
                "upstream_id": "u",
                "plugins": {
                    "traffic-split": {
                        "rules": [
                            {
                                "match": [{"vars": [["http_x", "like", "1"]]}],
                                "weighted_upstreams": [{"weight": 1}],
                            }
                        ]
                    }
                },
            },
            r"^failed to check the configuration of plugin traffic-split err: failed to validate the 'vars' expression: invalid operator 'like'$",
        ),
        (
            "/routes/r",
            {
                "uri": "/a",
                "upstream_id": "u",
                "plugins": {
                    "traffic-split": {
                        "rules": [{"weighted_upstreams": [{"upstream_id": "gone", "weight": 1}]}]
                    }
                },
            },
            r"^failed to check the configuration of plugin traffic-split err: failed to fetch upstream info by upstream id \[gone\]",
        ),
        (
            "/routes/r",
            {"uri": "/a", "upstream_id": "u", "plugins": {"prometheus": {"prefer_name": "yes"}}},
            r'^failed to check the configuration of plugin prometheus err: property "prefer_name" validation failed: wrong type: expected boolean, got string$',
        ),
    ],
)
async def test_invalid_bodies_are_refused_with_apisix_words(
    api: Admin, path: str, body: Any, expected: str
):
    await api.ok("PUT", "/upstreams/u", {"nodes": {"127.0.0.1:1": 1}}, status=201)
    status, answer = await api.call("PUT", path, body)
    assert status == 400, answer
    assert re.search(expected, answer["error_msg"]), answer["error_msg"]
    assert (await api.call("GET", path))[0] == 404  # nothing was stored


async def test_a_refused_patch_changes_nothing(api: Admin):
    await api.ok("PUT", "/upstreams/u", {"nodes": {"127.0.0.1:1": 1}}, status=201)
    before = await api.ok("PUT", "/routes/r", {"uri": "/a", "upstream_id": "u"}, status=201)
    status, answer = await api.call("PATCH", "/routes/r", {"uri": None})
    assert status == 400
    assert "uri" in answer["error_msg"]
    status, answer = await api.call("PATCH", "/routes/r/uri/deeper", "x")
    assert (status, answer) == (400, {"error_msg": "invalid sub-path: /uri"})
    assert (await api.ok("GET", "/routes/r"))["value"] == before["value"]


async def test_an_upstream_in_use_cannot_be_deleted(api: Admin):
    for name in ("stable", "canary"):
        await api.ok("PUT", f"/upstreams/{name}", {"nodes": {"127.0.0.1:1": 1}}, status=201)
    split = {"rules": [{"weighted_upstreams": [{"upstream_id": "canary", "weight": 1}]}]}
    route = {"uri": "/*", "upstream_id": "stable", "plugins": {"traffic-split": split}}
    await api.ok("PUT", "/routes/1", route, status=201)
    assert await api.call("DELETE", "/upstreams/stable") == (
        400,
        {"error_msg": "can not delete this upstream, route [1] is still using it now"},
    )
    assert await api.call("DELETE", "/upstreams/canary") == (
        400,
        {"error_msg": "can not delete this upstream, plugin in route [1] is still using it now"},
    )
    await api.ok("PATCH", "/routes/1", {"plugins": {"traffic-split": None}})
    await api.ok("DELETE", "/upstreams/canary")
    await api.ok("DELETE", "/routes/1")
    await api.ok("DELETE", "/upstreams/stable")


# -- the data plane ------------------------------------------------------------------------


async def test_traffic_split_vars_and_metrics_through_the_data_plane(
    gw: Gateway, api: Admin, http: aiohttp.ClientSession
):
    async with (
        Backend("stable", ip="127.0.0.2") as stable,
        Backend("canary", ip="127.0.0.3") as canary,
    ):
        await api.ok("PUT", "/upstreams/stable", {"nodes": {f"{stable.ip}:{stable.port}": 1}}, 201)
        await api.ok(
            "PUT",
            "/upstreams/canary",
            {"nodes": [{"host": canary.ip, "port": canary.port, "weight": 1}]},
            201,
        )
        split = {
            "rules": [
                {"weighted_upstreams": [{"upstream_id": "canary", "weight": 10}, {"weight": 90}]}
            ]
        }
        route = {
            "uri": "/*",
            "upstream_id": "stable",
            "plugins": {"prometheus": {}, "traffic-split": split},
        }
        await api.ok("PUT", "/routes/podinfo", route, status=201)
        url = gw.url + "/api/info"
        assert await counts(http, url, 100) == {"stable": 90, "canary": 10}

        # vars: only requests with the header go to the canary
        ab = {
            "rules": [
                {
                    "match": [{"vars": [["http_x-canary", "==", "insider"]]}],
                    "weighted_upstreams": [{"upstream_id": "canary", "weight": 1}],
                }
            ]
        }
        await api.ok("PATCH", "/routes/podinfo/plugins/traffic-split", ab)
        assert await counts(http, url, 10, {"X-Canary": "insider"}) == {"canary": 10}
        assert await counts(http, url, 10, {"X-Canary": "other"}) == {"stable": 10}
        assert await counts(http, url, 10) == {"stable": 10}

        # the plugin removed: everything back to the route's upstream
        await api.ok("PATCH", "/routes/podinfo", {"plugins": {"traffic-split": None}})
        assert await counts(http, url, 20) == {"stable": 20}

        async with http.get(gw.metrics_endpoint, timeout=TIMEOUT) as resp:
            samples = status_samples(await resp.text())
        assert samples == {("podinfo", "127.0.0.2"): 130.0, ("podinfo", "127.0.0.3"): 20.0}

        # prefer_name: the route label is the route's name
        await api.ok(
            "PATCH",
            "/routes/podinfo",
            {"name": "podinfo-route", "plugins": {"prometheus": {"prefer_name": True}}},
        )
        await counts(http, url, 3)
        async with http.get(gw.metrics_endpoint, timeout=TIMEOUT) as resp:
            samples = status_samples(await resp.text())
        assert samples[("podinfo-route", "127.0.0.2")] == 3.0


async def test_weight_only_inline_upstreams_node_weights_and_matching(
    gw: Gateway, api: Admin, http: aiohttp.ClientSession
):
    async with Backend("a", ip="127.0.0.4") as a, Backend("b", ip="127.0.0.5") as b:
        # nodes weighted 3:1 inside one upstream
        nodes = {f"{a.ip}:{a.port}": 3, f"{b.ip}:{b.port}": 1}
        await api.ok("PUT", "/routes/w", {"uri": "/weighted", "upstream": {"nodes": nodes}}, 201)
        assert await counts(http, gw.url + "/weighted", 100) == {"a": 75, "b": 25}

        # an inline upstream in weighted_upstreams next to a weight-only entry (the route's)
        split = {
            "rules": [
                {
                    "weighted_upstreams": [
                        {"upstream": {"nodes": {f"{b.ip}:{b.port}": 1}}, "weight": 1},
                        {"weight": 1},
                    ]
                }
            ]
        }
        route = {
            "uris": ["/split", "/split/*"],
            "methods": ["GET"],
            "hosts": ["example.com"],
            "upstream": {"nodes": {f"{a.ip}:{a.port}": 1}},
            "plugins": {"traffic-split": split},
        }
        await api.ok("PUT", "/routes/s", route, status=201)
        host = {"Host": "example.com"}
        assert await counts(http, gw.url + "/split/x", 10, host) == {"a": 5, "b": 5}
        assert await counts(http, gw.url + "/split/x", 1) == {"404": 1}  # other host
        async with http.post(gw.url + "/split", headers=host, timeout=TIMEOUT) as resp:
            assert resp.status == 404  # method not matched

        # a higher priority route with vars wins for the same uri
        await api.ok(
            "PUT",
            "/routes/v",
            {
                "uri": "/weighted",
                "priority": 10,
                "vars": [["arg_beta", "==", "1"]],
                "upstream": {"nodes": {f"{b.ip}:{b.port}": 1}},
            },
            201,
        )
        assert await counts(http, gw.url + "/weighted?beta=1", 4) == {"b": 4}

        # a disabled route is not served; /sandbox/routes lists the served ones
        await api.ok("PATCH", "/routes/v", {"status": 0})
        async with http.get(gw.metrics_url + "/sandbox/routes", timeout=TIMEOUT) as resp:
            table = await resp.json()
        assert sorted(r["id"] for r in table["routes"]) == ["s", "w"]
        assert all(r["source"] == "admin" for r in table["routes"])


async def test_admin_routes_join_the_synced_ones(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("kube", ip="127.0.0.6") as pod,
        Backend("admin", ip="127.0.0.7") as other,
        Gateway(cluster.url, admin_key=KEY) as gw,
        aiohttp.ClientSession() as http,
    ):
        await kube.create(objects.service("podinfo", "test", ports=[("http", 80, "http")]))
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "podinfo", "namespace": "test"},
                "subsets": [
                    {
                        "addresses": [{"ip": pod.ip}],
                        "ports": [{"name": "http", "port": pod.port, "protocol": "TCP"}],
                    }
                ],
            }
        )
        await kube.create(
            objects.apisix_route(
                "podinfo",
                [objects.rule("r", paths=["/kube"], backends=[objects.backend("podinfo", 80)])],
            )
        )
        await gw.wait_synced(lambda t: t.get("test_podinfo_r") is not None)
        api = Admin(http, gw.admin_url)
        node = {f"{other.ip}:{other.port}": 1}
        await api.ok("PUT", "/routes/1", {"uri": "/admin", "upstream": {"nodes": node}}, 201)
        assert await counts(http, gw.url + "/kube", 2) == {"kube": 2}
        assert await counts(http, gw.url + "/admin", 2) == {"admin": 2}
        assert {r.key for r in gw.table.routes} == {"test_podinfo_r", "admin/1"}


async def test_cli_serves_the_admin_api_without_kubernetes(tmp_path):
    key_file = tmp_path / "admin-key"
    key_file.write_text(KEY + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.gateway",
        "--admin-key-file",
        str(key_file),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        urls = {}
        async with asyncio.timeout(20):
            while len(urls) < 4:
                line = (await proc.stdout.readline()).decode().strip()
                assert line, (await proc.stderr.read()).decode()
                name, _, value = line.partition("=")
                urls[name] = value
        async with aiohttp.ClientSession() as http:
            api = Admin(http, urls["GATEWAY_ADMIN_URL"])
            assert await api.ok("GET", "/routes") == {"list": [], "total": 0}
            async with http.get(
                urls["GATEWAY_ROUTES_URL"].replace("/routes", "/healthz"), timeout=TIMEOUT
            ) as resp:
                assert resp.status == 200
        proc.terminate()
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_needs_a_kubeconfig_or_an_admin_key(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    for args in ((), ("--admin-key-file", str(empty))):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sandbox.gateway",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
        assert proc.returncode == 2
        assert b"--admin-key-file" in err

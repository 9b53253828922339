"""The traffic-shifter's Admin API platform against the sandbox's APISIX Admin API and a real
nats-server (the ``sluice_routes`` bucket), driven through the command handlers."""

from __future__ import annotations

import copy
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue

from libs import errors, messages, streams
from libs.adapters import apisix_admin
from libs.model import standalone
from sandbox.gateway.app import Gateway
from services.traffic_shifter import admin, capabilities, handlers
from services.traffic_shifter.admin import splitting

KEY = "platform-admin-key-7f1e"
REF = messages.CanaryRef(namespace="default", name="podinfo")
STABLE_NODES = {"127.0.0.1:9001": 1}
CANARY_NODES = {"127.0.0.1:9002": 1}
ROUTE = {
    "uri": "/*",
    "upstream_id": "podinfo-stable",
    "plugins": {"proxy-rewrite": {"headers": {"set": {"X-Route": "podinfo"}}}},
}
Obj = dict[str, Any]


def cond(scope: str, name: str, op: str, value: str) -> messages.MatchCondition:
    return messages.MatchCondition(scope=scope, name=name, op=op, value=value)


def target(**changes: Any) -> standalone.ApisixTarget:
    fields: dict[str, Any] = {
        "route_id": "podinfo",
        "canary": standalone.UpstreamSpec(id="podinfo-canary"),
        **changes,
    }
    return standalone.ApisixTarget(**fields)


def weights_cmd(primary: int, canary: int, **changes: Any) -> messages.SetWeights:
    fields: dict[str, Any] = {
        "canary": REF,
        "route": "podinfo",
        "service": "podinfo",
        "primary_weight": primary,
        "canary_weight": canary,
        **changes,
    }
    return messages.SetWeights(**fields)


INIT = messages.InitializeWorkload(canary=REF, target="podinfo", service="podinfo", port=80)
REVERT = messages.RevertCanary(canary=REF, target="podinfo", service="podinfo")
PROMOTE = messages.PromoteWorkload(canary=REF, target="podinfo", revision="2")


# ----------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("header", "X-Canary", "exact", "insider"), ["http_x_canary", "==", "insider"]),
        (
            cond("header", "User-Agent", "regex", ".*Firefox.*"),
            ["http_user_agent", "~~", ".*Firefox.*"],
        ),
        (cond("header", "x-version", "prefix", "v1.2"), ["http_x_version", "~~", r"^v1\.2"]),
        (cond("query", "beta", "suffix", "on+"), ["arg_beta", "~~", r"on\+$"]),
        (cond("cookie", "Canary", "exact", "always"), ["cookie_Canary", "==", "always"]),
    ],
)
def test_match_condition_as_vars(condition: messages.MatchCondition, expected: list[str]) -> None:
    assert splitting.var(condition) == expected


def test_bad_match_conditions_name_the_field() -> None:
    with pytest.raises(errors.InvalidInput, match="scope header, query or cookie") as caught:
        splitting.var(cond("path", "x", "exact", "1"))
    assert caught.value.path == "match[].scope"
    with pytest.raises(errors.InvalidInput, match="op exact, prefix, suffix or regex"):
        splitting.var(cond("header", "x", "glob", "1"))


def test_split_plugin_shapes() -> None:
    weights = capabilities.Weights(primary=90, canary=10)
    assert splitting.split_plugin(target(), weights) == {
        "rules": [
            {
                "weighted_upstreams": [
                    {"upstream_id": "podinfo-canary", "weight": 10},
                    {"weight": 90},
                ]
            }
        ]
    }
    inline = target(
        canary=standalone.UpstreamSpec(nodes=("127.0.0.1:9002",)),
        stable=standalone.UpstreamSpec(id="podinfo-stable"),
    )
    groups = [[cond("header", "x-canary", "exact", "1")], [cond("cookie", "c", "exact", "1")]]
    assert splitting.split_plugin(inline, weights, groups) == {
        "rules": [
            {
                "match": [
                    {"vars": [["http_x_canary", "==", "1"]]},
                    {"vars": [["cookie_c", "==", "1"]]},
                ],
                "weighted_upstreams": [
                    {"upstream": {"type": "roundrobin", "nodes": CANARY_NODES}, "weight": 10},
                    {"upstream_id": "podinfo-stable", "weight": 90},
                ],
            }
        ]
    }
    assert splitting.weights_of(splitting.split_plugin(inline, weights), inline, "r") == weights


def test_one_write_per_change() -> None:
    split = {"rules": [{"weighted_upstreams": [{"upstream_id": "c", "weight": 5}, {"weight": 95}]}]}
    mirror = {"host": "http://127.0.0.1:9002", "sample_ratio": 0.5}
    route: Obj = {"uri": "/*"}
    both = {splitting.SPLIT_PLUGIN: split, splitting.MIRROR_PLUGIN: None}
    assert splitting.plugins_write(route, both, route) == ("plugins/traffic-split", split)
    on = {"uri": "/*", "plugins": {"traffic-split": split}}
    assert splitting.plugins_write(on, both, route) is None
    off = {splitting.SPLIT_PLUGIN: None, splitting.MIRROR_PLUGIN: None}
    assert splitting.plugins_write(on, off, route) == ("", {"plugins": None})
    user = {"uri": "/*", "plugins": {"limit-count": {"count": 1}, "traffic-split": split}}
    assert splitting.plugins_write(user, off, user) == ("", {"plugins": {"traffic-split": None}})
    assert splitting.plugins_write(
        user, {splitting.SPLIT_PLUGIN: None, splitting.MIRROR_PLUGIN: mirror}, user
    ) == ("plugins", {"limit-count": {"count": 1}, "proxy-mirror": mirror})


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(None, admin_key=KEY) as gw:
        yield gw


@pytest.fixture
async def api(gateway: Gateway) -> AsyncIterator[apisix_admin.AdminApi]:
    client = apisix_admin.AdminApi(apisix_admin.AdminConfig(url=gateway.admin_url, api_key=KEY))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def routes_kv(nc: Client) -> KeyValue:
    js = nc.jetstream()
    await streams.declare(js, buckets=(streams.ROUTES,))
    return await js.key_value(streams.ROUTES.name)


class World:
    """The canaries' targets and finalizers, as the state store would give them."""

    def __init__(self) -> None:
        self.targets: dict[tuple[str, str], standalone.ApisixTarget] = {}
        self.finalizers: list[tuple[str, bool]] = []

    async def target(self, ref: messages.CanaryRef) -> standalone.ApisixTarget:
        try:
            return self.targets[(ref.namespace, ref.name)]
        except KeyError:
            raise errors.NotFound(f"canary {ref.namespace}/{ref.name} not found") from None

    async def finalizer(self, ref: messages.CanaryRef, present: bool) -> None:
        self.finalizers.append((ref.name, present))

    def shifter(self, api: apisix_admin.AdminApi, kv: KeyValue) -> handlers.Shifter:
        return handlers.Shifter(admin.platform(api, self.target, kv, self.finalizer))


@pytest.fixture
async def world(api: apisix_admin.AdminApi) -> World:
    await api.put("upstreams", "podinfo-stable", {"type": "roundrobin", "nodes": STABLE_NODES})
    await api.put("upstreams", "podinfo-canary", {"type": "roundrobin", "nodes": CANARY_NODES})
    await api.put("routes", "podinfo", ROUTE)
    w = World()
    w.targets[("default", "podinfo")] = target()
    return w


async def route_value(api: apisix_admin.AdminApi, route_id: str = "podinfo") -> Obj:
    return (await api.get("routes", route_id)).value


def stable(value: Obj) -> Obj:
    return splitting.without_volatile(value)


# ----------------------------------------------------------------------------- initialize


async def test_initialize_refuses_a_missing_route_or_upstream(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    shifter = world.shifter(api, routes_kv)
    world.targets[("default", "podinfo")] = target(route_id="nope")
    with pytest.raises(errors.NotFound, match=r"route nope not found in APISIX \(spec.route.id\)"):
        await shifter.workload(INIT)
    world.targets[("default", "podinfo")] = target(canary=standalone.UpstreamSpec(id="gone"))
    with pytest.raises(
        errors.NotFound, match=r"upstream gone not found in APISIX \(spec.upstreams.canary.id\)"
    ):
        await shifter.workload(INIT)
    world.targets[("default", "podinfo")] = target(stable=standalone.UpstreamSpec(id="old"))
    with pytest.raises(errors.NotFound, match=r"\(spec.upstreams.stable.id\)"):
        await shifter.workload(INIT)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await routes_kv.get("default.podinfo")  # nothing recorded


async def test_initialize_records_the_route_once(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    shifter = world.shifter(api, routes_kv)
    before = await route_value(api)
    reply = await shifter.workload(INIT)
    assert reply == messages.WorkloadApplied(canary=REF, workload="podinfo")
    entry = await routes_kv.get("default.podinfo")
    assert entry.value is not None
    assert msgspec.json.decode(entry.value) == before
    await shifter.set_weights(weights_cmd(90, 10))
    await shifter.workload(INIT)  # a second initialize keeps the first recording
    entry = await routes_kv.get("default.podinfo")
    assert entry.value is not None
    assert msgspec.json.decode(entry.value) == before


# ----------------------------------------------------------------------------- weights


async def test_weights_step_and_read_back(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    shifter = world.shifter(api, routes_kv)
    await shifter.workload(INIT)
    for canary in (10, 20, 50):
        reply = await shifter.set_weights(weights_cmd(100 - canary, canary))
        assert (reply.route, reply.primary_weight, reply.canary_weight) == (
            "podinfo",
            100 - canary,
            canary,
        )
        plugins = (await route_value(api))["plugins"]
        assert plugins["traffic-split"] == {
            "rules": [
                {
                    "weighted_upstreams": [
                        {"upstream_id": "podinfo-canary", "weight": canary},
                        {"weight": 100 - canary},
                    ]
                }
            ]
        }
        assert plugins["proxy-rewrite"] == ROUTE["plugins"]["proxy-rewrite"]  # type: ignore[index]
    router = admin.platform(api, world.target, routes_kv, world.finalizer).router
    assert await router.get_weights(weights_cmd(50, 50)) == capabilities.Weights(50, 50)
    reply = await shifter.set_weights(weights_cmd(100, 0))
    assert (reply.primary_weight, reply.canary_weight) == (100, 0)
    assert "traffic-split" not in (await route_value(api))["plugins"]


async def test_ab_match_and_mirroring_in_one_write(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    shifter = world.shifter(api, routes_kv)
    await shifter.workload(INIT)
    groups = [
        [cond("header", "X-Canary", "exact", "insider")],
        [cond("cookie", "canary", "regex", "^always$")],
    ]
    await shifter.set_weights(weights_cmd(0, 100, match=groups))
    rule = (await route_value(api))["plugins"]["traffic-split"]["rules"][0]
    assert rule["match"] == [
        {"vars": [["http_x_canary", "==", "insider"]]},
        {"vars": [["cookie_canary", "~~", "^always$"]]},
    ]
    # blue/green with mirroring: everything on the stable side, a share copied to the canary
    reply = await shifter.set_weights(weights_cmd(100, 0, mirror_percent=25))
    assert (reply.primary_weight, reply.canary_weight) == (100, 0)
    plugins = (await route_value(api))["plugins"]
    assert "traffic-split" not in plugins
    assert plugins["proxy-mirror"] == {"host": "http://127.0.0.1:9002", "sample_ratio": 0.25}
    await shifter.set_weights(weights_cmd(100, 0))
    assert set((await route_value(api))["plugins"]) == {"proxy-rewrite"}


async def test_a_foreign_split_is_a_conflict(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    shifter = world.shifter(api, routes_kv)
    await shifter.workload(INIT)
    await shifter.set_weights(weights_cmd(90, 10))
    foreign = {"rules": [{"weighted_upstreams": [{"upstream_id": "podinfo-stable", "weight": 1}]}]}
    await api.patch("routes", "podinfo", foreign, path="plugins/traffic-split")
    router = admin.platform(api, world.target, routes_kv, world.finalizer).router
    with pytest.raises(errors.Conflict, match="another writer"):
        await router.get_weights(weights_cmd(90, 10))


# ----------------------------------------------------------------------------- promote, scale


async def test_promote_to_the_stable_upstream_by_id(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    world.targets[("default", "podinfo")] = target(
        stable=standalone.UpstreamSpec(id="podinfo-stable")
    )
    shifter = world.shifter(api, routes_kv)
    await shifter.workload(INIT)
    await shifter.workload(PROMOTE)
    assert (await api.get("upstreams", "podinfo-stable")).value["nodes"] == CANARY_NODES
    scaled = await shifter.workload(
        messages.ScaleWorkload(canary=REF, workload="podinfo", replicas=0)
    )
    assert scaled.replicas == 0


async def test_promote_the_routes_inline_upstream_and_revert_keeps_it(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    inline = {"uri": "/*", "upstream": {"type": "roundrobin", "nodes": STABLE_NODES}}
    await api.put("routes", "inline", inline)
    world.targets[("default", "podinfo")] = target(
        route_id="inline", canary=standalone.UpstreamSpec(nodes={"127.0.0.1:9003": 2})
    )
    shifter = world.shifter(api, routes_kv)
    await shifter.workload(INIT)
    await shifter.set_weights(weights_cmd(80, 20))
    await shifter.workload(PROMOTE)
    await shifter.set_weights(weights_cmd(100, 0))
    value = await route_value(api, "inline")
    assert value["upstream"]["nodes"] == {"127.0.0.1:9003": 2}
    assert "plugins" not in value
    await shifter.workload(REVERT)
    assert (await route_value(api, "inline"))["upstream"]["nodes"] == {"127.0.0.1:9003": 2}


# ----------------------------------------------------------------------------- deletion


async def test_revert_restores_the_route_exactly(
    world: World, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    mirror = {"host": "http://127.0.0.1:7000", "sample_ratio": 0.1}
    await api.patch("routes", "podinfo", mirror, path="plugins/proxy-mirror")  # the user's own
    before = await route_value(api)
    shifter = world.shifter(api, routes_kv)
    await shifter.workload(INIT)
    await shifter.workload(messages.SetFinalizer(canary=REF, present=True))
    await shifter.set_weights(weights_cmd(70, 30, mirror_percent=50))
    assert (await route_value(api))["plugins"]["proxy-mirror"]["host"] == "http://127.0.0.1:9002"
    await shifter.workload(REVERT)
    assert stable(await route_value(api)) == stable(before)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await routes_kv.get("default.podinfo")
    await shifter.workload(REVERT)  # twice: nothing left to do
    await shifter.workload(messages.SetFinalizer(canary=REF, present=False))
    assert world.finalizers == [("podinfo", True), ("podinfo", False)]


# ----------------------------------------------------------------------------- failures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_wrong_key_and_unreachable_api_leave_the_route_unchanged(
    world: World, gateway: Gateway, api: apisix_admin.AdminApi, routes_kv: KeyValue
) -> None:
    await world.shifter(api, routes_kv).workload(INIT)
    before = copy.deepcopy(await route_value(api))
    wrong = apisix_admin.AdminApi(
        apisix_admin.AdminConfig(url=gateway.admin_url, api_key="not-the-key", retries=0)
    )
    gone_url = f"http://127.0.0.1:{_free_port()}"
    gone = apisix_admin.AdminApi(apisix_admin.AdminConfig(url=gone_url, api_key=KEY, retries=1))
    try:
        with pytest.raises(errors.PermanentError, match=apisix_admin.KEY_SETTING) as refused:
            await world.shifter(wrong, routes_kv).set_weights(weights_cmd(90, 10))
        assert "not-the-key" not in str(refused.value)
        with pytest.raises(errors.Unavailable, match=gone_url):
            await world.shifter(gone, routes_kv).set_weights(weights_cmd(90, 10))
    finally:
        await wrong.close()
        await gone.close()
    assert await route_value(api) == before

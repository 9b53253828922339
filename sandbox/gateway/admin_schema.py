"""What APISIX's Admin API accepts for routes and upstreams, checked the way APISIX checks it.

``check_route`` / ``check_upstream`` raise ``Invalid`` with APISIX's ``error_msg`` for a body
APISIX refuses: ``invalid configuration: <jsonschema message>`` for schema errors (the
jsonschema words, ``property "x" validation failed: ...``, nested per field), ``unknown plugin
[x]``, ``failed to check the configuration of plugin x err: ...``, ``failed to fetch upstream
info by upstream id [x], response code: 404``, ``failed to validate the 'vars' expression:
...``. Where APISIX's own words do not name the field (``oneOf`` / ``anyOf`` failures), the
message ends with `` - expected ...`` naming it.

Where the sandbox is stricter than APISIX (each says so in its message): ``service_id`` and
``plugin_config_id`` (no services or plugin configs here), upstreams found by service
discovery, schemes other than http, vars other than ``uri``, ``http_*``, ``arg_*``,
``cookie_*`` and operators beyond the ones ApisixRoutes use, nested ``AND``/``OR``
expressions, and a traffic-split ``upstream_id`` naming no upstream (APISIX takes such a route
and answers its requests 500).

``exprs`` turns a ``vars`` list into the data plane's ``translation.Expr``; ``nodes`` turns an
upstream's nodes (``{"host:port": weight}`` or ``[{host, port, weight}]``) into
``translation.Node``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.gateway import mirroring, translation

UpstreamExists = Callable[[str], bool]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ROUTE_FIELDS = _words(
    """
    id name desc labels create_time update_time uri uris priority methods host hosts
    remote_addr remote_addrs timeout vars filter_func script script_id plugins
    plugin_config_id upstream service_id upstream_id enable_websocket status
    """
)
UPSTREAM_FIELDS = _words(
    """
    id name desc labels create_time update_time nodes retries retry_timeout timeout type
    checks hash_on key scheme discovery_type discovery_args pass_host upstream_host
    service_name keepalive_pool tls
    """
)
METHODS = frozenset(
    {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"}
)
BALANCERS = frozenset({"roundrobin", "chash", "ewma", "least_conn"})
SCHEMES = frozenset({"http", "https", "grpc", "grpcs", "tcp", "tls", "udp", "kafka"})
PASS_HOST = frozenset({"pass", "node", "rewrite"})
# Plugins APISIX enables by default (config-default.yaml); only prometheus, traffic-split and
# proxy-mirror have an effect in the sandbox, the others are kept as configured.
PLUGINS = _words(
    """
    real-ip ai client-control proxy-control request-id zipkin ext-plugin-pre-req
    fault-injection mocking serverless-pre-function cors ip-restriction ua-restriction
    referer-restriction csrf uri-blocker request-validation chaitin-waf multi-auth
    openid-connect cas-auth authz-casbin authz-casdoor wolf-rbac ldap-auth hmac-auth
    basic-auth jwt-auth jwe-decrypt key-auth consumer-restriction attach-consumer-label
    forward-auth opa authz-keycloak proxy-cache body-transformer proxy-mirror proxy-rewrite
    workflow api-breaker limit-conn limit-count limit-req gzip traffic-split redirect
    response-rewrite degraphql kafka-proxy grpc-transcode grpc-web http-dubbo public-api
    prometheus datadog loki-logger elasticsearch-logger echo loggly http-logger
    splunk-hec-logging skywalking-logger google-cloud-logging sls-logger tcp-logger
    kafka-logger rocketmq-logger syslog udp-logger file-logger clickhouse-logger
    tencent-cloud-cls inspect example-plugin aws-lambda azure-functions openwhisk
    openfunction serverless-post-function ext-plugin-post-req ext-plugin-post-resp
    """
)
SPLIT = "traffic-split"
PROMETHEUS = "prometheus"
OPERATORS = ("==", "~=", ">", "<", "~~", "~*", "in")
_RESTY_EXPR_OPERATORS = frozenset({">=", "<=", "has", "ipmatch", "IN"})
_ID = re.compile(r"^[a-zA-Z0-9-_.]+$")


class Invalid(Exception):
    """A body APISIX's Admin API answers 400; the message is its ``error_msg``."""


class _Schema(Exception):
    """A jsonschema failure, in api7/jsonschema's words (without APISIX's prefix)."""


def type_name(value: Any) -> str:
    """A JSON value's type as the Lua side names it in errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "table"


def _wrong(expected: str, value: Any) -> _Schema:
    return _Schema(f"wrong type: expected {expected}, got {type_name(value)}")


def _nested(name: str, check: Callable[[], object]) -> None:
    try:
        check()
    except _Schema as e:
        raise _Schema(f'property "{name}" validation failed: {e}') from None


def _item(index: int, check: Callable[[], object]) -> None:
    try:
        check()
    except _Schema as e:
        raise _Schema(f"failed to validate item {index + 1}: {e}") from None


def _object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _wrong("object", value)
    return value


def _string(value: Any, min_length: int = 0, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise _wrong("string", value)
    if len(value) < min_length:
        raise _Schema(f"string too short, expected at least {min_length}, got {len(value)}")
    if max_length is not None and len(value) > max_length:
        raise _Schema(f"string too long, expected at most {max_length}, got {len(value)}")
    return value


def _integer(value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    ):
        raise _wrong("integer", value)
    number = int(value)
    if minimum is not None and number < minimum:
        raise _Schema(f"expected {number} to be at least {minimum}")
    if maximum is not None and number > maximum:
        raise _Schema(f"expected {number} to be at most {maximum}")
    return number


def _number(
    value: Any, exclusive_minimum: float | None = None, minimum: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong("number", value)
    if minimum is not None and value < minimum:
        raise _Schema(f"expected {value:g} to be at least {minimum:g}")
    if exclusive_minimum is not None and value <= exclusive_minimum:
        raise _Schema(f"expected {value:g} to be greater than {exclusive_minimum:g}")
    return float(value)


def _array(value: Any, min_items: int = 0, max_items: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong("array", value)
    if len(value) < min_items:
        raise _Schema(f"expect array to have at least {min_items} items")
    if max_items is not None and len(value) > max_items:
        raise _Schema(f"expect array to have at most {max_items} items")
    return value


def _strings(value: Any, min_items: int = 0, unique: bool = True) -> list[str]:
    items = _array(value, min_items)
    for i, item in enumerate(items):
        _item(i, functools.partial(_string, item))
    if unique and len(set(items)) != len(items):
        raise _Schema("expected unique items but items are not unique")
    return items


def _enum(value: Any, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise _Schema("matches none of the enum values")
    return str(value)


def _status(value: Any) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise _Schema("matches none of the enum values")
    return int(value)


def check_id(value: Any) -> str:
    """APISIX's id schema: a string of ``[a-zA-Z0-9-_.]`` (1-64) or an integer >= 1."""
    if isinstance(value, str) and 1 <= len(value) <= 64 and _ID.match(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return str(value)
    raise _Schema(
        "object matches none of the required - expected a string of [a-zA-Z0-9-_.] "
        "(1 to 64 characters) or an integer >= 1"
    )


def _labels(value: Any) -> None:
    for key, label in _object(value).items():
        if not isinstance(label, str):
            raise _Schema(
                f'failed to validate {key} (matching ".*"): wrong type: expected string, '
                f"got {type_name(label)}"
            )


def _timeout(value: Any) -> None:
    conf = _object(value)
    for field in ("connect", "send", "read"):
        if field in conf:
            _nested(field, functools.partial(_number, conf[field], exclusive_minimum=0))
    for field in conf:
        if field not in ("connect", "send", "read"):
            raise _Schema(f"additional properties forbidden, found {field}")


def _host(value: Any) -> str:
    host = _string(value)
    if ":" in host and not host.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            pass
        else:
            raise _Schema("IPv6 address must be enclosed with '[' and ']'")
    return host


def _run(check: Callable[[], Any]) -> Any:
    try:
        return check()
    except _Schema as e:
        raise Invalid(f"invalid configuration: {e}") from None


# -- nodes ---------------------------------------------------------------------------------


def _split_address(address: str) -> tuple[str, int]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        host, port = address, ""
    if not host:
        raise _Schema(f"invalid node address {address!r} - expected host:port")
    if not port:
        return host, 80
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _Schema(f"invalid node address {address!r} - expected a port from 1 to 65535")
    return host, int(port)


_NODES_EXPECTED = (
    'object matches none of the required - expected {"host:port": weight} '
    'or [{"host": ..., "port": ..., "weight": ...}]'
)


def nodes(value: Any) -> tuple[translation.Node, ...]:
    """An upstream's nodes in either form APISIX takes, as data plane nodes."""
    out: list[translation.Node] = []
    if isinstance(value, dict):
        for address, weight in value.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise _Schema(
                    f'{_NODES_EXPECTED}: the weight of "{address}" must be an integer >= 0'
                )
            host, port = _split_address(address)
            out.append(translation.Node(host, port, weight=weight))
        return tuple(out)
    if isinstance(value, list):
        for i, node in enumerate(value):
            where = f"item {i + 1}"
            if not isinstance(node, dict):
                raise _Schema(f"{_NODES_EXPECTED}: {where} is not an object")
            missing = [f for f in ("host", "weight") if f not in node]
            if missing:
                raise _Schema(f'{_NODES_EXPECTED}: {where} lacks "{missing[0]}"')
            try:
                host = _host(node["host"])
                weight = _integer(node["weight"], minimum=0)
                port = _integer(node.get("port", 80), minimum=1, maximum=65535)
            except _Schema as e:
                raise _Schema(f"{_NODES_EXPECTED}: {where}: {e}") from None
            out.append(translation.Node(host.strip("[]"), port, weight=weight))
        return tuple(out)
    raise _Schema(_NODES_EXPECTED)


# -- upstreams -----------------------------------------------------------------------------


def _upstream_schema(conf_value: Any) -> None:
    conf = _object(conf_value)
    for field in conf:
        if field not in UPSTREAM_FIELDS:
            raise _Schema(f"additional properties forbidden, found {field}")
    checks: dict[str, Callable[[Any], Any]] = {
        "id": check_id,
        "name": lambda v: _string(v, 1, 100),
        "desc": lambda v: _string(v, max_length=256),
        "labels": _labels,
        "create_time": _integer,
        "update_time": _integer,
        "nodes": nodes,
        "retries": lambda v: _integer(v, minimum=0),
        "retry_timeout": lambda v: _number(v, minimum=0),
        "timeout": _timeout,
        "type": lambda v: _enum(v, BALANCERS),
        "checks": _object,
        "hash_on": lambda v: _enum(v, frozenset({"vars", "header", "cookie", "consumer"})),
        "key": _string,
        "scheme": lambda v: _enum(v, SCHEMES),
        "pass_host": lambda v: _enum(v, PASS_HOST),
        "upstream_host": _host,
        "keepalive_pool": _object,
        "tls": _object,
        "discovery_type": _string,
        "discovery_args": _object,
        "service_name": lambda v: _string(v, 1, 256),
    }
    for field, check in checks.items():
        if field in conf:
            _nested(field, functools.partial(check, conf[field]))
    has_nodes = "nodes" in conf
    discovered = "service_name" in conf and "discovery_type" in conf
    if has_nodes and discovered:
        raise _Schema("value should match only one schema, but matches both schemas 1 and 2")
    if not has_nodes and not discovered:
        raise _Schema(
            'value should match only one schema, but matches none - expected "nodes" '
            '(or "service_name" with "discovery_type")'
        )
    if discovered:
        raise _Schema(
            'the sandbox has no service discovery - expected "nodes" instead of "service_name"'
        )
    if conf.get("scheme", "http") != "http":
        raise _Schema(
            f'property "scheme" validation failed: the sandbox proxies http only, '
            f"got {conf['scheme']!r}"
        )
    if conf.get("type") == "chash" and "key" not in conf:
        raise _Schema('missing "key" for the chash balancer')


def check_upstream(conf: Any) -> None:
    """An upstream object (``/apisix/admin/upstreams``)."""
    _run(lambda: _upstream_schema(conf))


# -- expressions ---------------------------------------------------------------------------


def _var_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"expected a variable name, got {name!r}")
    if name.startswith("http_"):
        return "http_" + name[5:].lower().replace("-", "_")
    if name == "uri" or name.startswith(("arg_", "cookie_")):
        return name
    raise ValueError(
        f"variable {name!r} is not supported by the sandbox (uri, http_*, arg_*, cookie_*)"
    )


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string or number as value, got {type_name(value)}")


def exprs(value: Any) -> tuple[translation.Expr, ...]:
    """A ``vars`` list (``[[var, op, value], [var, "!", op, value], ...]``, all must hold) as
    the data plane's expressions; ``ValueError`` says what is wrong."""
    if not isinstance(value, list):
        raise ValueError(f"expected an array of expressions, got {type_name(value)}")
    out: list[translation.Expr] = []
    for i, entry in enumerate(value):
        where = f"expression {i + 1}"
        if not isinstance(entry, list) or not entry:
            raise ValueError(f"{where}: expected [var, operator, value], got {entry!r}")
        if isinstance(entry[0], str) and entry[0] in ("AND", "OR", "!AND", "!OR"):
            raise ValueError(
                f"{where}: nested {entry[0]} expressions are not supported by the sandbox"
            )
        invert = len(entry) == 4 and entry[1] == "!"
        parts = [entry[0], *entry[2:]] if invert else entry
        if len(parts) != 3:
            raise ValueError(f"{where}: expected [var, operator, value], got {entry!r}")
        var, op, raw = parts
        if op in _RESTY_EXPR_OPERATORS:
            raise ValueError(
                f"{where}: operator {op!r} is not supported by the sandbox ({', '.join(OPERATORS)})"
            )
        if op not in OPERATORS:
            raise ValueError(f"invalid operator '{op}'")
        try:
            name = _var_name(var)
            if op == "in":
                if not isinstance(raw, list):
                    raise ValueError(f"expected an array as value of 'in', got {raw!r}")
                val: str | tuple[str, ...] = tuple(_scalar(v) for v in raw)
            else:
                val = _scalar(raw)
                if op in ("~~", "~*"):
                    re.compile(val)
        except (ValueError, re.error) as e:
            raise ValueError(f"{where}: {e}") from None
        out.append(translation.Expr(var=name, op=op, value=val, invert=invert))
    return tuple(out)


# -- plugins -------------------------------------------------------------------------------


def _traffic_split(conf: Mapping[str, Any], upstream_exists: UpstreamExists) -> None:
    def weighted(entry_value: Any) -> None:
        entry = _object(entry_value)
        if "upstream_id" in entry:
            _nested("upstream_id", lambda: check_id(entry["upstream_id"]))
        if "upstream" in entry:
            _nested("upstream", lambda: _upstream_schema(entry["upstream"]))
        if "weight" in entry:
            _nested("weight", lambda: _integer(entry["weight"], minimum=0))

    def rule(rule_value: Any) -> None:
        item = _object(rule_value)
        if "match" in item:

            def match() -> None:
                for j, m in enumerate(_array(item["match"])):

                    def one(m: Any) -> None:
                        entry = _object(m)
                        if "vars" in entry:
                            _nested("vars", lambda: _array(entry["vars"]))

                    _item(j, functools.partial(one, m))

            _nested("match", match)
        if "weighted_upstreams" in item:

            def ups() -> None:
                for j, w in enumerate(_array(item["weighted_upstreams"], 1, 20)):
                    _item(j, functools.partial(weighted, w))

            _nested("weighted_upstreams", ups)

    def rules() -> None:
        for i, r in enumerate(_array(conf["rules"])):
            _item(i, functools.partial(rule, r))

    if "rules" in conf:
        _nested("rules", rules)
        for i, r in enumerate(conf["rules"]):
            for m in r.get("match") or []:
                if "vars" in m:
                    try:
                        exprs(m["vars"])
                    except ValueError as e:
                        raise _Plugin(f"failed to validate the 'vars' expression: {e}") from None
            for j, w in enumerate(r.get("weighted_upstreams") or []):
                up_id = w.get("upstream_id")
                if up_id is not None and not upstream_exists(str(up_id)):
                    raise _Plugin(
                        f"failed to fetch upstream info by upstream id [{up_id}], "
                        f"response code: 404 - at rules[{i}].weighted_upstreams[{j}].upstream_id "
                        "(the sandbox refuses what APISIX would answer 500)"
                    )


class _Plugin(Exception):
    """A plugin's own check failed (not its schema)."""


def _plugin(name: str, conf: Any, upstream_exists: UpstreamExists) -> None:
    if not isinstance(conf, dict):
        raise _wrong("object", conf)
    meta = conf.get("_meta")
    if meta is not None:
        _nested("_meta", lambda: _object(meta))
    if name == PROMETHEUS and "prefer_name" in conf:
        _nested("prefer_name", lambda: _boolean(conf["prefer_name"]))
    elif name == SPLIT:
        _traffic_split(conf, upstream_exists)
    elif name == mirroring.PLUGIN:
        try:
            mirroring.parse(conf, "$", {}, {})
        except mirroring.ConfigError as e:
            raise _Schema(str(e)) from None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong("boolean", value)
    return value


def check_plugins(plugins: Any, upstream_exists: UpstreamExists) -> None:
    if not isinstance(plugins, dict):
        raise Invalid(
            f'invalid configuration: property "plugins" validation failed: '
            f"{_wrong('object', plugins)}"
        )
    for name, conf in plugins.items():
        if name not in PLUGINS:
            raise Invalid(f"unknown plugin [{name}]")
        try:
            _plugin(name, conf, upstream_exists)
        except (_Schema, _Plugin) as e:
            raise Invalid(f"failed to check the configuration of plugin {name} err: {e}") from None


# -- routes --------------------------------------------------------------------------------


def _route_schema(conf_value: Any) -> Mapping[str, Any]:
    conf = _object(conf_value)
    for field in conf:
        if field not in ROUTE_FIELDS:
            raise _Schema(f"additional properties forbidden, found {field}")

    def methods(value: Any) -> None:
        for i, method in enumerate(_array(value)):
            _item(i, functools.partial(_enum, method, METHODS))

    checks: dict[str, Callable[[Any], Any]] = {
        "id": check_id,
        "name": lambda v: _string(v, 1, 100),
        "desc": lambda v: _string(v, max_length=256),
        "labels": _labels,
        "create_time": _integer,
        "update_time": _integer,
        "uri": lambda v: _string(v, 1, 4096),
        "uris": lambda v: _strings(v, min_items=1),
        "priority": _integer,
        "methods": methods,
        "host": _host,
        "hosts": lambda v: [_host(h) for h in _strings(v, min_items=1)],
        "remote_addr": _string,
        "remote_addrs": lambda v: _strings(v, min_items=1),
        "timeout": _timeout,
        "vars": _array,
        "plugins": _object,
        "upstream": _upstream_schema,
        "service_id": check_id,
        "upstream_id": check_id,
        "plugin_config_id": check_id,
        "enable_websocket": _boolean,
        "status": _status,
    }
    for field, check in checks.items():
        if field in conf:
            _nested(field, functools.partial(check, conf[field]))
    paths = [f for f in ("uri", "uris") if f in conf]
    if len(paths) != 1:
        which = "none" if not paths else "both schemas 1 and 2"
        raise _Schema(
            f"allOf 1 failed: value should match only one schema, but matches {which} - "
            'expected exactly one of "uri" or "uris"'
        )
    if not any(f in conf for f in ("plugins", "upstream", "upstream_id", "service_id", "script")):
        raise _Schema(
            'value should match only one schema, but matches none - expected "upstream", '
            '"upstream_id", "service_id" or "plugins" with "uri" or "uris"'
        )
    for field in ("script", "filter_func"):
        if field in conf:
            raise _Schema(f'property "{field}" validation failed: not supported by the sandbox')
    for address in ([conf["remote_addr"]] if "remote_addr" in conf else []) + list(
        conf.get("remote_addrs") or []
    ):
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise _Schema(f"invalid remote address {address!r} - expected an IP or CIDR") from None
    return conf


def check_route(conf: Any, upstream_exists: UpstreamExists) -> None:
    """A route object (``/apisix/admin/routes``); ``upstream_exists(id)`` for references."""
    if isinstance(conf, dict):
        if "host" in conf and "hosts" in conf:
            raise Invalid("only one of host or hosts is allowed")
        if "remote_addr" in conf and "remote_addrs" in conf:
            raise Invalid("only one of remote_addr or remote_addrs is allowed")
    route = _run(lambda: _route_schema(conf))
    if "upstream" in route:
        _run(lambda: _upstream_schema(route["upstream"]))
    up_id = route.get("upstream_id")
    if up_id is not None and not upstream_exists(str(up_id)):
        raise Invalid(f"failed to fetch upstream info by upstream id [{up_id}], response code: 404")
    if "service_id" in route:
        raise Invalid(
            f"failed to fetch service info by service id [{route['service_id']}], "
            "response code: 404 (the sandbox has no services)"
        )
    if "plugin_config_id" in route:
        raise Invalid(
            f"failed to fetch plugin config info by plugin config id "
            f"[{route['plugin_config_id']}], response code: 404 (the sandbox has no plugin configs)"
        )
    if "plugins" in route:
        check_plugins(route["plugins"], upstream_exists)
    if "vars" in route:
        try:
            exprs(route["vars"])
        except ValueError as e:
            raise Invalid(f"failed to validate the 'vars' expression: {e}") from None

"""Route plugins with an effect on requests: ``proxy-rewrite`` and ``limit-count``.

Their config is checked as APISIX's plugin schemas check it (a bad one makes the rule
untranslatable, ``ConfigError`` naming the field) and turned into small frozen values the data
plane applies:

* ``proxy-rewrite``: ``uri`` (the upstream path, starting with ``/``), else ``regex_uri``
  (``[regex, template, ...]`` pairs; the first that matches the path rewrites it, ``$1``..
  ``$9`` replaced by its groups), ``host`` (the upstream ``Host``), and ``headers`` —
  ``set`` / ``add`` (name → value) and ``remove`` (names), or a flat name → value map meaning
  ``set``. The query string is kept unless the new ``uri`` has its own.
* ``limit-count`` (``policy: local`` only): at most ``count`` requests per ``time_window``
  seconds per key (``key_type: var`` with ``key`` ``remote_addr`` by default, or
  ``constant``); past it the answer is ``rejected_code`` (default 503) with ``rejected_msg``
  as ``{"error_msg": ...}`` when set. ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset``
  headers are added unless ``show_limit_quota_header`` is false.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

PROXY_REWRITE = "proxy-rewrite"
LIMIT_COUNT = "limit-count"

_HEADER_NAME = re.compile(r"^[^:]+$")
_KEY_VARS = {
    "remote_addr",
    "server_addr",
    "http_x_real_ip",
    "http_x_forwarded_for",
    "consumer_name",
}


class ConfigError(Exception):
    """A plugin config APISIX's schema would refuse; the message names the field path."""


@dataclasses.dataclass(frozen=True)
class Rewrite:
    uri: str = ""
    regex_uri: tuple[tuple[re.Pattern[str], str], ...] = ()
    host: str = ""
    set_headers: tuple[tuple[str, str], ...] = ()
    add_headers: tuple[tuple[str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()

    def path_qs(self, path: str, query: str) -> str:
        """The upstream's path and query for a request to ``path``?``query``."""
        new = path
        if self.uri:
            new = self.uri
        else:
            for pattern, template in self.regex_uri:
                m = pattern.search(path)
                if m:
                    new = pattern.sub(_template(template), path, count=1)
                    break
        if "?" in new or not query:
            return new
        return f"{new}?{query}"


def _template(template: str) -> str:
    """APISIX's ``$1`` group references in Python's ``\\g<1>`` form."""
    return re.sub(r"\$(\d)", r"\\g<\1>", template.replace("\\", "\\\\"))


@dataclasses.dataclass(frozen=True)
class LimitCount:
    count: int
    time_window: int
    key_type: str = "var"
    key: str = "remote_addr"
    rejected_code: int = 503
    rejected_msg: str = ""
    show_headers: bool = True


@dataclasses.dataclass(frozen=True)
class Effects:
    rewrite: Rewrite | None = None
    limit: LimitCount | None = None


def parse(plugins: Mapping[str, Any], paths: Mapping[str, str]) -> Effects:
    """The effects of a rule's enabled plugins (name → config); ``paths`` gives each config's
    field path for the error messages."""
    rewrite = limit = None
    if PROXY_REWRITE in plugins:
        rewrite = parse_rewrite(plugins[PROXY_REWRITE], paths.get(PROXY_REWRITE, PROXY_REWRITE))
    if LIMIT_COUNT in plugins:
        limit = parse_limit_count(plugins[LIMIT_COUNT], paths.get(LIMIT_COUNT, LIMIT_COUNT))
    return Effects(rewrite, limit)


def _string(conf: Mapping[str, Any], field: str, path: str, min_len: int = 1) -> str:
    value = conf.get(field)
    if not isinstance(value, str) or len(value) < min_len:
        raise ConfigError(f"Expected a non-empty string, got {value!r} - at {path}.{field}")
    return value


def _header_map(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"Expected an object of header name to value, got {value!r} - at {path}")
    out = []
    for name, header_value in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigError(f"Expected a header name, got {name!r} - at {path}")
        if not isinstance(header_value, str | int | float) or isinstance(header_value, bool):
            raise ConfigError(
                f"Expected a string or number, got {header_value!r} - at {path}.{name}"
            )
        out.append((name, str(header_value)))
    return tuple(out)


def parse_rewrite(conf: Any, path: str) -> Rewrite:
    if not isinstance(conf, Mapping):
        raise ConfigError(f"Expected an object, got {conf!r} - at {path}")
    uri = ""
    if "uri" in conf:
        uri = _string(conf, "uri", path)
        if not uri.startswith("/") or len(uri) > 4096:
            raise ConfigError(f"Expected a path starting with '/', got {uri!r} - at {path}.uri")
    regex_uri: list[tuple[re.Pattern[str], str]] = []
    if "regex_uri" in conf:
        raw = conf["regex_uri"]
        if (
            not isinstance(raw, list)
            or len(raw) < 2
            or len(raw) % 2
            or not all(isinstance(v, str) for v in raw)
        ):
            raise ConfigError(
                f"Expected [regex, template, ...] (an even number of strings, at least 2), "
                f"got {raw!r} - at {path}.regex_uri"
            )
        for i in range(0, len(raw), 2):
            try:
                regex_uri.append((re.compile(raw[i]), raw[i + 1]))
            except re.error as e:
                raise ConfigError(
                    f"Expected a regular expression, got {raw[i]!r} ({e}) - at {path}.regex_uri[{i}]"
                ) from e
    host = _string(conf, "host", path) if "host" in conf else ""
    set_headers: tuple[tuple[str, str], ...] = ()
    add_headers: tuple[tuple[str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()
    headers = conf.get("headers")
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise ConfigError(f"Expected an object, got {headers!r} - at {path}.headers")
        if {"set", "add", "remove"} & set(headers):
            extra = set(headers) - {"set", "add", "remove"}
            if extra:
                raise ConfigError(
                    f"Expected only set|add|remove, got {sorted(extra)} - at {path}.headers"
                )
            set_headers = _header_map(headers.get("set") or {}, f"{path}.headers.set")
            add_headers = _header_map(headers.get("add") or {}, f"{path}.headers.add")
            remove = headers.get("remove") or []
            if not isinstance(remove, list) or not all(
                isinstance(n, str) and _HEADER_NAME.match(n) for n in remove
            ):
                raise ConfigError(
                    f"Expected a list of header names, got {remove!r} - at {path}.headers.remove"
                )
            remove_headers = tuple(remove)
        else:
            set_headers = _header_map(headers, f"{path}.headers")
    return Rewrite(uri, tuple(regex_uri), host, set_headers, add_headers, remove_headers)


def _positive_int(conf: Mapping[str, Any], field: str, path: str) -> int:
    value = conf.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"Expected an integer > 0, got {value!r} - at {path}.{field}")
    return value


def parse_limit_count(conf: Any, path: str) -> LimitCount:
    if not isinstance(conf, Mapping):
        raise ConfigError(f"Expected an object, got {conf!r} - at {path}")
    count = _positive_int(conf, "count", path)
    window = _positive_int(conf, "time_window", path)
    key_type = conf.get("key_type", "var")
    if key_type not in ("var", "constant"):
        raise ConfigError(
            f"Expected key_type var|constant (var_combination is not simulated), "
            f"got {key_type!r} - at {path}.key_type"
        )
    key = conf.get("key", "remote_addr")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"Expected a non-empty string, got {key!r} - at {path}.key")
    if key_type == "var" and key not in _KEY_VARS:
        key = "remote_addr"  # APISIX falls back to remote_addr for an unknown variable
    code = conf.get("rejected_code", 503)
    if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
        raise ConfigError(
            f"Expected an integer from 200 to 599, got {code!r} - at {path}.rejected_code"
        )
    message = conf.get("rejected_msg", "")
    if "rejected_msg" in conf and (not isinstance(message, str) or not message):
        raise ConfigError(f"Expected a non-empty string, got {message!r} - at {path}.rejected_msg")
    policy = conf.get("policy", "local")
    if policy != "local":
        raise ConfigError(
            f"Expected policy local (redis is not simulated), got {policy!r} - at {path}.policy"
        )
    show = conf.get("show_limit_quota_header", True)
    if not isinstance(show, bool):
        raise ConfigError(f"Expected a boolean, got {show!r} - at {path}.show_limit_quota_header")
    return LimitCount(count, window, key_type, key, code, message, show)


class Counters:
    """Fixed-window request counters of ``limit-count``, per route and key."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def take(self, route: str, key: str, limit: LimitCount) -> tuple[bool, int, int]:
        """Count one request: (allowed, remaining, seconds until the window resets)."""
        now = time.monotonic()
        started, used = self._windows.get((route, key), (now, 0))
        if now - started >= limit.time_window:
            started, used = now, 0
        reset = max(int(started + limit.time_window - now), 0)
        if used >= limit.count:
            return False, 0, reset
        self._windows[(route, key)] = (started, used + 1)
        return True, limit.count - used - 1, reset

    def forget(self, keep: set[str]) -> None:
        """Drop the counters of routes no longer in the table."""
        for entry in [k for k in self._windows if k[0] not in keep]:
            del self._windows[entry]

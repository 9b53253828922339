"""An ApisixUpstream's ``healthCheck`` as apisix-ingress-controller translates it into the
upstream's ``checks``, with APISIX's defaults; pure functions.

* ``active`` (``type`` http|https|tcp, ``timeout``, ``concurrency``, ``host``, ``port``,
  ``httpPath``, ``strictTLS``, ``requestHeaders``, ``healthy`` {``interval``, ``httpCodes``,
  ``successes``}, ``unhealthy`` {``interval``, ``httpCodes``, ``httpFailures``,
  ``tcpFailures``, ``timeouts``}) and ``passive`` (``type``, ``healthy`` {``httpCodes``,
  ``successes``}, ``unhealthy`` {``httpCodes``, ``httpFailures``, ``tcpFailures``,
  ``timeouts``}).
* The controller's rules: ``passive`` without ``active`` is refused (``healthCheck.active``);
  counts are 0 … 254 and ``httpCodes`` a non-empty list; a ``healthy`` or ``unhealthy`` block
  of ``active`` needs an ``interval`` (a duration such as ``5s``) of at least one second, and
  only whole seconds reach APISIX (``1500ms`` is 1). A zero or missing value is left out of
  the upstream, so APISIX's default applies (``DEFAULT_ACTIVE``, ``DEFAULT_PASSIVE``).
* ``active.timeout`` is read as seconds (a number or a duration string), whole seconds kept.
  ``unhealthy.timeouts`` is also read under ``timeout``, the key the controller decodes.
* APISIX's checker always has passive thresholds: without ``passive`` its defaults apply to
  the connection failures and timeouts the balancer reports on retries (``Checks.passive_or_default``).

Bad values raise ``upstreams.TranslationError``-compatible ``CheckError`` with the field path.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]
TYPES = ("http", "https", "tcp")
MAX_COUNT = 254  # apisix-ingress-controller's HealthCheckMaxConsecutiveNumber
_HOST = re.compile(r"^\*?[0-9a-zA-Z\-._\[\]:]+$")


@dataclasses.dataclass(frozen=True)
class Healthy:
    interval: float = 0  # seconds between probes of a healthy node (active only; 0: none)
    http_statuses: tuple[int, ...] = ()
    successes: int = 0


@dataclasses.dataclass(frozen=True)
class Unhealthy:
    interval: float = 0  # seconds between probes of an unhealthy node (active only; 0: none)
    http_statuses: tuple[int, ...] = ()
    http_failures: int = 0
    tcp_failures: int = 0
    timeouts: int = 0


@dataclasses.dataclass(frozen=True)
class Active:
    type: str = "http"
    timeout: float = 1.0
    concurrency: int = 10
    host: str = ""  # the probe's Host (empty: the node's IP)
    port: int = 0  # probe this port instead of the node's (0: the node's)
    http_path: str = "/"
    https_verify_certificate: bool = True
    req_headers: tuple[str, ...] = ()
    healthy: Healthy = Healthy(interval=1, http_statuses=(200, 302), successes=2)
    unhealthy: Unhealthy = Unhealthy(
        interval=1,
        http_statuses=(429, 404, 500, 501, 502, 503, 504, 505),
        http_failures=5,
        tcp_failures=2,
        timeouts=3,
    )


@dataclasses.dataclass(frozen=True)
class Passive:
    type: str = "http"
    healthy: Healthy = Healthy(
        http_statuses=(*range(200, 209), 226, *range(300, 309)),
        successes=5,
    )
    unhealthy: Unhealthy = Unhealthy(
        http_statuses=(429, 500, 503), http_failures=5, tcp_failures=2, timeouts=7
    )


DEFAULT_ACTIVE = Active()
DEFAULT_PASSIVE = Passive()


@dataclasses.dataclass(frozen=True)
class Checks:
    active: Active
    passive: Passive | None = None

    @property
    def passive_or_default(self) -> Passive:
        return self.passive or DEFAULT_PASSIVE

    def to_json(self) -> Obj:
        """As APISIX shows the upstream's ``checks`` (its defaults filled in)."""

        def block(b: Healthy | Unhealthy, active: bool) -> Obj:
            out = {k: v for k, v in dataclasses.asdict(b).items() if active or k != "interval"}
            out["http_statuses"] = list(b.http_statuses)
            return out

        a = self.active
        out: Obj = {
            "active": {
                "type": a.type,
                "timeout": a.timeout,
                "concurrency": a.concurrency,
                "http_path": a.http_path,
                "https_verify_certificate": a.https_verify_certificate,
                "healthy": block(a.healthy, True),
                "unhealthy": block(a.unhealthy, True),
            }
        }
        if a.host:
            out["active"]["host"] = a.host
        if a.port:
            out["active"]["port"] = a.port
        if a.req_headers:
            out["active"]["req_headers"] = list(a.req_headers)
        if self.passive is not None:
            p = self.passive
            out["passive"] = {
                "type": p.type,
                "healthy": block(p.healthy, False),
                "unhealthy": block(p.unhealthy, False),
            }
        return out


class CheckError(Exception):
    """A ``healthCheck`` the controller refuses; the message names the field path."""


def parse_checks(spec: object, path: str, duration: Callable[[str, str], float]) -> Checks | None:
    """``healthCheck`` at ``path`` → the upstream's checks (None: no checks).
    ``duration`` parses a Go duration string (``upstreams.parse_duration``)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise CheckError(f"Expected an object, got {spec!r} - at {path}")
    active, passive = spec.get("active"), spec.get("passive")
    if active is None and passive is None:
        return None
    if active is None:
        raise CheckError(f"Expected an active check when passive is set - at {path}.active")
    parsed_passive = None
    if passive is not None:
        parsed_passive = _passive(_object(passive, f"{path}.passive"), f"{path}.passive")
    return Checks(
        active=_active(_object(active, f"{path}.active"), f"{path}.active", duration),
        passive=parsed_passive,
    )


def _active(spec: Mapping[str, Any], path: str, duration: Callable[[str, str], float]) -> Active:
    d = DEFAULT_ACTIVE
    timeout = spec.get("timeout")
    seconds = 0
    if timeout is not None:
        if isinstance(timeout, str):
            seconds = int(duration(timeout, f"{path}.timeout"))
        elif isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout >= 0:
            seconds = int(timeout)
        else:
            raise CheckError(
                f"Expected a number of seconds >= 0 or a duration, got {timeout!r} - at {path}.timeout"
            )
    host = spec.get("host") or ""
    if not isinstance(host, str) or (host and not _HOST.match(host)):
        raise CheckError(f"Expected a host name or IP, got {host!r} - at {path}.host")
    http_path = spec.get("httpPath") or d.http_path
    if not isinstance(http_path, str):
        raise CheckError(f"Expected a string, got {http_path!r} - at {path}.httpPath")
    strict = spec.get("strictTLS")
    if strict is not None and not isinstance(strict, bool):
        raise CheckError(f"Expected true or false, got {strict!r} - at {path}.strictTLS")
    headers = spec.get("requestHeaders") or []
    if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
        raise CheckError(f"Expected a list of strings, got {headers!r} - at {path}.requestHeaders")
    healthy, unhealthy = d.healthy, d.unhealthy
    if spec.get("healthy") is not None:
        at = f"{path}.healthy"
        block = _object(spec["healthy"], at)
        healthy = Healthy(
            interval=_interval(block, at, duration),
            http_statuses=_codes(block, at) or d.healthy.http_statuses,
            successes=_count(block, "successes", at) or d.healthy.successes,
        )
    if spec.get("unhealthy") is not None:
        at = f"{path}.unhealthy"
        block = _object(spec["unhealthy"], at)
        unhealthy = Unhealthy(
            interval=_interval(block, at, duration),
            http_statuses=_codes(block, at) or d.unhealthy.http_statuses,
            http_failures=_count(block, "httpFailures", at) or d.unhealthy.http_failures,
            tcp_failures=_count(block, "tcpFailures", at) or d.unhealthy.tcp_failures,
            timeouts=_timeouts(block, at) or d.unhealthy.timeouts,
        )
    return Active(
        type=_type(spec, path),
        timeout=float(seconds or d.timeout),
        concurrency=_count(spec, "concurrency", path, limit=None) or d.concurrency,
        host=host,
        port=_port(spec, path),
        http_path=http_path,
        https_verify_certificate=strict is None or strict,
        req_headers=tuple(headers),
        healthy=healthy,
        unhealthy=unhealthy,
    )


def _passive(spec: Mapping[str, Any], path: str) -> Passive:
    d = DEFAULT_PASSIVE
    healthy, unhealthy = d.healthy, d.unhealthy
    if spec.get("healthy") is not None:
        at = f"{path}.healthy"
        block = _object(spec["healthy"], at)
        healthy = Healthy(
            http_statuses=_codes(block, at) or d.healthy.http_statuses,
            successes=_count(block, "successes", at) or d.healthy.successes,
        )
    if spec.get("unhealthy") is not None:
        at = f"{path}.unhealthy"
        block = _object(spec["unhealthy"], at)
        unhealthy = Unhealthy(
            http_statuses=_codes(block, at) or d.unhealthy.http_statuses,
            http_failures=_count(block, "httpFailures", at) or d.unhealthy.http_failures,
            tcp_failures=_count(block, "tcpFailures", at) or d.unhealthy.tcp_failures,
            timeouts=_timeouts(block, at) or d.unhealthy.timeouts,
        )
    return Passive(type=_type(spec, path), healthy=healthy, unhealthy=unhealthy)


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CheckError(f"Expected an object, got {value!r} - at {path}")
    return value


def _type(spec: Mapping[str, Any], path: str) -> str:
    kind = spec.get("type") or "http"
    if kind not in TYPES:
        raise CheckError(f"Expected type one of {'|'.join(TYPES)}, got {kind!r} - at {path}.type")
    return str(kind)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(spec: Mapping[str, Any], key: str, path: str, limit: int | None = MAX_COUNT) -> int:
    value = spec.get(key)
    if value is None:
        return 0
    if not _is_int(value) or value < 0 or (limit is not None and value > limit):
        bound = f" and <= {limit}" if limit is not None else ""
        raise CheckError(f"Expected an integer >= 0{bound}, got {value!r} - at {path}.{key}")
    return int(value)


def _timeouts(spec: Mapping[str, Any], path: str) -> int:
    key = "timeouts" if spec.get("timeouts") is not None else "timeout"
    return _count(spec, key, path)


def _port(spec: Mapping[str, Any], path: str) -> int:
    value = spec.get("port")
    if value is None:
        return 0
    if not _is_int(value) or not 0 <= value <= 65535:
        raise CheckError(f"Expected a port 0-65535, got {value!r} - at {path}.port")
    return int(value)


def _codes(spec: Mapping[str, Any], path: str) -> tuple[int, ...]:
    value = spec.get("httpCodes")
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or not value
        or not all(_is_int(c) and 200 <= c <= 599 for c in value)
    ):
        raise CheckError(
            f"Expected a non-empty list of HTTP codes 200-599, got {value!r} - at {path}.httpCodes"
        )
    return tuple(dict.fromkeys(value))


def _interval(spec: Mapping[str, Any], path: str, duration: Callable[[str, str], float]) -> int:
    value = spec.get("interval")
    seconds = duration(value, f"{path}.interval") if isinstance(value, str) else 0.0
    if value is not None and not isinstance(value, str):
        raise CheckError(f"Expected a duration such as '5s', got {value!r} - at {path}.interval")
    if seconds < 1:
        raise CheckError(f"Expected an interval of at least 1s, got {value!r} - at {path}.interval")
    return int(seconds)

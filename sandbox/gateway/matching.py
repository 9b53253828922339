"""Which route serves a request: APISIX's ``radixtree_host_uri`` router, reimplemented.

The order in which candidate routes are tried (first one whose every condition holds wins):

1. routes **with hosts** whose host pattern matches the request's host (``Host`` without port,
   lowercased): exact hosts before wildcard hosts, longer wildcard suffixes first;
   then routes **without hosts**;
2. for the same host (or among host-less routes): an **exact path** before **prefix paths**
   (``/foo*``), longer prefixes first — radixtree's full-match hash, then its prefix walk;
3. for the same host and path: **higher priority first**;
4. still tied: by route name (radixtree's order is unspecified there; the sandbox makes it stable).

So ``priority`` only decides between routes whose host and path patterns are the same, exactly
as in APISIX: a route for ``/api/v1/*`` beats one for ``/api/*`` whatever their priorities. This is
what Flagger relies on: its canary ApisixRoute copies the primary rule's match and wins by
``priority: 10000``.

The remaining conditions are checked on each candidate: ``methods``, ``remote_addrs`` (IP or
CIDR), and ``vars`` (all must hold). ``vars`` are lua-resty-expr expressions over nginx
variables: ``http_<header>`` (lowercase, ``-`` as ``_``), ``arg_<name>`` (raw, undecoded query
value; name case-insensitive), ``cookie_<name>``, ``uri`` (the decoded path). A missing variable
is ``nil``: ``==``, ``>``, ``<``, ``~~``, ``~*``, ``in`` are false, ``~=`` is true; ``!`` negates.
``>``/``<`` compare numbers (false when either side is not a number); ``~~``/``~*`` search a
regular expression anywhere in the value (PCRE there, Python ``re`` here).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache

from sandbox.gateway import translation

Route = translation.Route


@dataclasses.dataclass(frozen=True)
class Request:
    """What the router looks at, taken from one HTTP request."""

    method: str
    host: str  # Host header without port, lowercased
    uri: str  # decoded path, no query
    query: str = ""  # raw query string
    headers: tuple[tuple[str, str], ...] = ()
    remote_addr: str = "127.0.0.1"

    @classmethod
    def build(
        cls,
        method: str,
        host: str,
        uri: str,
        query: str = "",
        headers: Mapping[str, str] | tuple[tuple[str, str], ...] = (),
        remote_addr: str = "127.0.0.1",
    ) -> Request:
        pairs = tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers)
        return cls(method.upper(), strip_port(host).lower(), uri, query, pairs, remote_addr)


@dataclasses.dataclass(frozen=True)
class Match:
    route: Route
    matched_uri: str  # the route's path pattern that matched, as APISIX's matched_uri label
    matched_host: str  # the host pattern that matched ("" for host-less routes)


def strip_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Variables:
    """nginx variables of one request, computed on first use."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self._headers: dict[str, str] | None = None
        self._args: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

    def get(self, name: str) -> str | None:
        if name == "uri":
            return self.request.uri
        if name.startswith("http_"):
            if self._headers is None:
                self._headers = {}
                for key, value in self.request.headers:
                    self._headers.setdefault(key.lower().replace("-", "_"), value)
            return self._headers.get(name[5:])
        if name.startswith("arg_"):
            if self._args is None:
                self._args = {}
                for part in self.request.query.split("&"):
                    if part:
                        key, _, value = part.partition("=")
                        self._args.setdefault(key.lower(), value)
            return self._args.get(name[4:].lower())
        if name.startswith("cookie_"):
            if self._cookies is None:
                self._cookies = {}
                for key, value in self.request.headers:
                    if key.lower() == "cookie":
                        for part in value.split(";"):
                            cname, sep, cvalue = part.strip().partition("=")
                            if sep:
                                self._cookies.setdefault(cname.lower(), cvalue)
            return self._cookies.get(name[7:].lower())
        return None


@lru_cache(maxsize=1024)
def _regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def eval_expr(expr: translation.Expr, variables: Variables) -> bool:
    left = variables.get(expr.var)
    right = expr.value
    result: bool
    if expr.op == "==":
        result = left is not None and left == right
    elif expr.op == "~=":
        result = left != right
    elif expr.op in (">", "<"):
        lnum, rnum = _number(left), _number(right if isinstance(right, str) else None)
        if lnum is None or rnum is None:
            result = False
        else:
            result = lnum > rnum if expr.op == ">" else lnum < rnum
    elif expr.op in ("~~", "~*"):
        result = (
            left is not None
            and isinstance(right, str)
            and (_regex(right, expr.op == "~*").search(left) is not None)
        )
    elif expr.op == "in":
        result = left is not None and left in (right if isinstance(right, tuple) else (right,))
    else:  # translation only produces the operators above
        result = False
    return not result if expr.invert else result


def _remote_ok(route: Route, addr: str) -> bool:
    if not route.remote_addrs:
        return True
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in route.remote_addrs)


@dataclasses.dataclass(frozen=True)
class _Entry:
    route: Route
    host: str  # "" for a host-less route
    uri: str

    def order(self) -> tuple[int, int, int, int, int, int, str]:
        if self.host:
            wildcard = self.host.startswith("*")
            host_key = (0, 1 if wildcard else 0, -len(self.host) if wildcard else 0)
        else:
            host_key = (1, 0, 0)
        prefix = self.uri.endswith("*")
        path_key = (1 if prefix else 0, -len(self.uri) if prefix else 0)
        return (*host_key, *path_key, -self.route.priority, self.route.name)

    def host_matches(self, host: str) -> bool:
        if not self.host:
            return True
        if self.host.startswith("*"):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def uri_matches(self, uri: str) -> bool:
        if self.uri.endswith("*"):
            return uri.startswith(self.uri[:-1])
        return uri == self.uri


class Router:
    """Matches requests against one route table (rebuild it when the table changes)."""

    def __init__(self, table: translation.RouteTable) -> None:
        entries = [
            _Entry(route, host, uri)
            for route in table.routes
            for host in (route.hosts or ("",))
            for uri in route.uris
        ]
        entries.sort(key=_Entry.order)
        self._entries = tuple(entries)

    def match(self, request: Request) -> Match | None:
        variables = Variables(request)
        for entry in self._entries:
            if not (entry.host_matches(request.host) and entry.uri_matches(request.uri)):
                continue
            route = entry.route
            if route.methods and request.method not in route.methods:
                continue
            if not _remote_ok(route, request.remote_addr):
                continue
            if not all(eval_expr(e, variables) for e in route.vars):
                continue
            return Match(route, entry.uri, entry.host)
        return None

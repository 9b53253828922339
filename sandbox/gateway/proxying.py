"""The gateway's data plane: match a request to a route, pick an upstream node, proxy, log.

Per request, as APISIX does it:

* no route matches → ``404 {"error_msg":"404 Route Not Found"}`` (not recorded in metrics:
  the prometheus plugin is route-level);
* traffic-split: the backend is picked by smooth weighted round-robin over the route's
  backends (``balancing.SmoothWeighted``), then a node of that backend's upstream by
  round-robin. The pickers keep their state across route-table updates as long as the route's
  weights (resp. the upstream's nodes) are unchanged, like APISIX's per-version balancer cache.
  Routes set through the Admin API carry traffic-split's own rules: the first whose ``match``
  holds picks among its weighted upstreams, none → the route's upstream; nodes with different
  weights are picked by smooth weighted round-robin too (weight 0: never);
* an upstream without nodes → ``503``; connection refused/failed → the next node of the same
  upstream is tried (APISIX retries ``#nodes - 1`` times), then ``502``; no answer within
  the route's timeout → ``504``;
* the request is forwarded with its method, path and query (raw, as received), body and
  headers; ``Host`` is preserved, hop-by-hop headers are dropped, ``X-Real-IP`` and
  ``X-Forwarded-For/-Proto/-Host/-Port`` are set. The response is streamed back without its
  hop-by-hop headers, with ``Server: APISIX/<version>``;
* a route with ``proxy-mirror`` copies the sampled requests to the mirror host in the
  background (``mirroring``) before proxying; the client's response does not wait for the copy;
* ``limit-count`` answers ``rejected_code`` past its quota before any upstream is picked, and
  ``proxy-rewrite`` changes the upstream path, ``Host`` and headers (``plugins``);
* the log phase records the request for the prometheus plugin (``exporting``);
* an upstream with health checks (``health``): unhealthy nodes are skipped (all are used when
  none is healthy); responses count for its passive checks, and a refused connection that is
  retried counts as a TCP failure.
"""

from __future__ import annotations

import dataclasses
import http
import json
import logging
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sandbox.gateway import (
    balancing,
    exporting,
    health,
    matching,
    mirroring,
    nodes,
    translation,
)
from sandbox.gateway import plugins as route_plugins

logger = logging.getLogger(__name__)

SERVER = "APISIX/3.9.1"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers aiohttp's client adds unless told not to; the upstream must see the client's own.
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    # Seconds for connect / whole response when the route sets no timeout (APISIX: 60 s each).
    connect_timeout: float = 60.0
    read_timeout: float = 60.0
    # Idle keep-alive connections kept per upstream node, and their idle lifetime in seconds.
    keepalive_per_host: int = 64
    keepalive_timeout: float = 30.0
    # proxy-mirror: seconds a copy may take in all (APISIX's plugin_attr timeouts are 60 s
    # each), and copies in flight at most (more are dropped, as a saturated mirror would be).
    mirror_timeout: float = 60.0
    mirror_concurrency: int = 256


def filter_headers(headers: CIMultiDict[str] | object) -> CIMultiDict[str]:
    """Drop hop-by-hop headers, including those the ``Connection`` header names."""
    src: CIMultiDict[str] = headers  # type: ignore[assignment]
    named = {
        token.strip().lower()
        for value in src.getall("Connection", [])
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in src.items():
        lower = key.lower()
        if lower in HOP_BY_HOP or lower in named:
            continue
        out.add(key, value)
    return out


def forwarded_headers(request: web.BaseRequest) -> CIMultiDict[str]:
    """The request's headers as the upstream gets them: no hop-by-hop headers, ``Host`` kept,
    ``X-Real-IP`` and ``X-Forwarded-For/-Proto/-Host/-Port`` set."""
    headers = filter_headers(request.headers)
    client_ip = request.remote or ""
    prior = headers.getone("X-Forwarded-For", "")
    headers["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    headers["X-Real-IP"] = client_ip
    headers["X-Forwarded-Proto"] = request.scheme
    headers.setdefault("X-Forwarded-Host", matching.strip_port(request.headers.get("Host", "")))
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if sockname:
        headers["X-Forwarded-Port"] = str(sockname[1])
    return headers


def error_page(status: int, reason: str) -> str:
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>openresty</center>\r\n"
        f'<p><em>Powered by <a href="https://apisix.apache.org/">APISIX</a>.</em></p></body>\r\n</html>\r\n'
    )


class DataPlane:
    def __init__(
        self, metrics: exporting.ApisixMetrics, settings: ProxySettings | None = None
    ) -> None:
        self.metrics = metrics
        self.settings = settings or ProxySettings()
        self.table = translation.RouteTable()
        self.router = matching.Router(self.table)
        self._splitters: dict[
            str, tuple[object, balancing.SmoothWeighted[translation.Upstream]]
        ] = {}
        self.nodes = nodes.NodeChoice()
        self.health = health.Checkers(self.nodes.dial)
        metrics.upstream_status = self.health.statuses
        self._session: aiohttp.ClientSession | None = None
        self.mirrors: mirroring.Mirrors | None = None
        self.counters = route_plugins.Counters()  # limit-count windows
        self.in_flight = 0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            keepalive_timeout=self.settings.keepalive_timeout,
            force_close=False,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.mirrors = mirroring.Mirrors(
            self._session, self.settings.mirror_timeout, self.settings.mirror_concurrency
        )
        await self.health.start()

    async def stop(self) -> None:
        await self.health.stop()
        if self.mirrors is not None:
            await self.mirrors.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def set_table(self, table: translation.RouteTable) -> None:
        self.table = table
        self.router = matching.Router(table)
        self.counters.forget({r.key for r in table.routes})
        self.health.update(health.in_table(table))

    # -- balancing ---------------------------------------------------------------------------

    def pick_upstream(
        self, route: translation.Route, request: matching.Request | None = None
    ) -> translation.Upstream | None:
        if route.split_rules:
            return self._pick_split_rule(route, request)
        if not route.weighted_upstreams:
            return route.upstream
        backends = route.backends()
        version = tuple((b.upstream.name, b.weight) for b in backends)
        cached = self._splitters.get(route.key)
        if cached is None or cached[0] != version:
            items = [(b.upstream, b.weight) for b in backends]
            if not any(w > 0 for _, w in items):
                # traffic-split with no positive weight: the route's own upstream serves.
                items = [(route.upstream, 1)]
            cached = (version, balancing.SmoothWeighted(items))
            self._splitters[route.key] = cached
        return cached[1].pick()

    def _pick_split_rule(
        self, route: translation.Route, request: matching.Request | None
    ) -> translation.Upstream | None:
        """traffic-split as configured through the Admin API: the first rule whose match holds
        (no match: any request) shares requests among its upstreams; no rule: the route's."""
        variables = matching.Variables(request) if request is not None else None
        for index, rule in enumerate(route.split_rules):
            if rule.match and not (
                variables is not None
                and any(
                    all(matching.eval_expr(e, variables) for e in entry) for entry in rule.match
                )
            ):
                continue
            key = f"{route.key}#{index}"
            version = tuple((w.upstream.name, w.weight) for w in rule.weighted_upstreams)
            cached = self._splitters.get(key)
            if cached is None or cached[0] != version:
                items = [(w.upstream, w.weight) for w in rule.weighted_upstreams]
                cached = (version, balancing.SmoothWeighted(items))
                self._splitters[key] = cached
            picked = cached[1].pick()
            return route.upstream if picked is None else picked
        return route.upstream

    # -- the handler ---------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        self.metrics.count_request()
        self.in_flight += 1
        try:
            return await self._handle(request, started)
        finally:
            self.in_flight -= 1

    async def _handle(self, request: web.BaseRequest, started: float) -> web.StreamResponse:
        host_header = request.headers.get("Host", "")
        req = matching.Request(
            method=request.method,
            host=matching.strip_port(host_header).lower(),
            uri=request.path,
            query=request.raw_path.partition("?")[2],
            headers=tuple(request.headers.items()),
            remote_addr=request.remote or "",
        )
        found = self.router.match(req)
        if found is None:
            body = b'{"error_msg":"404 Route Not Found"}\n'
            return web.Response(
                status=404,
                body=body,
                headers={"Server": SERVER, "Content-Type": "text/plain; charset=utf-8"},
            )
        route = found.route
        request_body = await request.content.read()
        request_bytes = _request_size(request, len(request_body))

        mirror, mirrors = route.mirror, self.mirrors
        if mirror is not None and mirrors is not None and mirrors.sampled(mirror):
            mirrors.copy(
                route.name,
                mirror,
                request.method,
                request.raw_path.partition("?")[0],
                req.query,
                forwarded_headers(request),
                request_body,
            )

        state = _Log(node="", upstream_ms=None, response_bytes=0)
        try:
            response = await self._proxy(request, route, request_body, state, req)
        finally:
            if route.prometheus:
                self.metrics.record(
                    exporting.Observation(
                        code=state.code,
                        route=route.metric_route_label,
                        matched_uri=found.matched_uri,
                        matched_host=found.matched_host,
                        node=state.node,
                        latency_ms=(time.monotonic() - started) * 1000.0,
                        upstream_latency_ms=state.upstream_ms,
                        request_bytes=request_bytes,
                        response_bytes=state.response_bytes,
                    )
                )
        return response

    async def _proxy(
        self,
        request: web.BaseRequest,
        route: translation.Route,
        body: bytes,
        state: _Log,
        req: matching.Request | None = None,
    ) -> web.StreamResponse:
        quota: dict[str, str] = {}
        limit = route.effects.limit
        if limit is not None:
            allowed, remaining, reset = self.counters.take(
                route.key, _limit_key(request, limit), limit
            )
            if limit.show_headers:
                quota = {
                    "X-RateLimit-Limit": str(limit.count),
                    "X-RateLimit-Remaining": str(remaining),
                    "X-RateLimit-Reset": str(reset),
                }
            if not allowed:
                return self._rejected(state, limit, quota)
        upstream = self.pick_upstream(route, req)
        if upstream is None or not upstream.nodes:
            return await self._error(request, state, 503, "Service Temporarily Unavailable")
        settings = upstream.settings
        timeout = (
            route.timeout
            or settings.timeout
            or translation.Timeout(
                connect=self.settings.connect_timeout, read=self.settings.read_timeout
            )
        )
        headers = forwarded_headers(request)
        skip = [h for h in _AUTO_HEADERS if h not in headers]
        path_qs = request.raw_path if request.raw_path.startswith("/") else str(request.rel_url)
        rewrite = route.effects.rewrite
        if rewrite is not None:
            raw_path, _, query = path_qs.partition("?")
            path_qs = rewrite.path_qs(raw_path, query)
            _rewrite_headers(headers, rewrite)

        checker = self.health.get(upstream)
        pick = self.nodes.order(
            self.health.usable(upstream), req, request.remote or "", request.raw_path
        )
        # APISIX tries every node once unless the upstream sets ``retries``.
        attempts = (
            settings.retries + 1 if settings.retries is not None else max(len(upstream.nodes), 1)
        )
        scheme = "https" if settings.scheme in ("https", "grpcs") else "http"
        assert self._session is not None, "DataPlane.start() was not awaited"
        for attempt in range(attempts):
            node = pick(attempt)
            if node is None:
                break
            state.node = node.host
            dial = self.nodes.dial(node)
            if dial is None:
                continue
            if not nodes.is_ip(dial[0]):  # a Domain node: resolved per request, as APISIX does
                resolved = await nodes.resolve(dial[0], timeout.connect)
                if resolved is None:
                    logger.info("route %s: cannot resolve %s", route.name, dial[0])
                    if attempt + 1 < attempts:
                        continue
                    return await self._error(request, state, 502, "Bad Gateway")
                dial = (resolved, dial[1])
                state.node = resolved
            if settings.pass_host != "pass":
                headers["Host"] = nodes.upstream_host(settings, node)
                if rewrite is not None and rewrite.host:  # proxy-rewrite's host wins
                    headers["Host"] = rewrite.host
            url = URL(f"{scheme}://{_host_for_url(dial[0])}:{dial[1]}{path_qs}", encoded=True)
            upstream_started = time.monotonic()
            self.nodes.started(node)
            try:
                client_timeout = aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.connect,
                    sock_connect=timeout.connect,
                    sock_read=timeout.read,
                )
                async with self._session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=body if body else None,
                    allow_redirects=False,
                    timeout=client_timeout,
                    skip_auto_headers=skip,
                    ssl=scheme != "https",  # APISIX does not verify upstream certificates
                ) as upstream_response:
                    response = web.StreamResponse(
                        status=upstream_response.status, reason=upstream_response.reason
                    )
                    for key, value in filter_headers(upstream_response.headers).items():
                        if key.lower() not in ("server", "date", "content-length"):
                            response.headers.add(key, value)
                    response.headers["Server"] = SERVER
                    response.headers.update(quota)
                    if upstream_response.content_length is not None and request.method != "HEAD":
                        response.content_length = upstream_response.content_length
                    state.code = upstream_response.status
                    if checker is not None:
                        checker.report_status(node, state.code)
                    await response.prepare(request)
                    async for chunk in upstream_response.content.iter_any():
                        state.response_bytes += len(chunk)
                        await response.write(chunk)
                    state.upstream_ms = (time.monotonic() - upstream_started) * 1000.0
                    await response.write_eof()
                    state.response_bytes += _headers_size(response)
                    return response
            except aiohttp.ClientConnectorError as e:
                logger.info("route %s: connect to %s failed: %s", route.name, node.address, e)
                if attempt + 1 < attempts:
                    if checker is not None:
                        checker.report_failure(node, health.TCP)
                    continue
                return await self._error(request, state, 502, "Bad Gateway")
            except TimeoutError:
                logger.info("route %s: upstream %s timed out", route.name, node.address)
                state.upstream_ms = (time.monotonic() - upstream_started) * 1000.0
                if state.code:  # the response had started: nothing to do but cut it
                    raise
                return await self._error(request, state, 504, "Gateway Time-out")
            except aiohttp.ClientError as e:
                logger.info("route %s: upstream %s failed: %s", route.name, node.address, e)
                state.upstream_ms = (time.monotonic() - upstream_started) * 1000.0
                if state.code:
                    raise
                return await self._error(request, state, 502, "Bad Gateway")
            finally:
                self.nodes.finished(node)
        return await self._error(request, state, 502, "Bad Gateway")

    def _rejected(
        self, state: _Log, limit: route_plugins.LimitCount, quota: dict[str, str]
    ) -> web.Response:
        """limit-count's answer past the quota: ``rejected_msg`` as JSON, else nginx's page."""
        state.code = limit.rejected_code
        if limit.rejected_msg:
            body = json.dumps({"error_msg": limit.rejected_msg}).encode()
            content_type = "text/plain; charset=utf-8"
        else:
            reason = http.HTTPStatus(limit.rejected_code).phrase
            body = error_page(limit.rejected_code, reason).encode()
            content_type = "text/html; charset=utf-8"
        state.response_bytes = len(body)
        return web.Response(
            status=limit.rejected_code,
            body=body,
            headers={"Server": SERVER, "Content-Type": content_type, **quota},
        )

    async def _error(
        self, request: web.BaseRequest, state: _Log, status: int, reason: str
    ) -> web.StreamResponse:
        state.code = status
        body = error_page(status, reason).encode()
        state.response_bytes = len(body)
        return web.Response(
            status=status,
            body=body,
            headers={"Server": SERVER, "Content-Type": "text/html; charset=utf-8"},
        )


@dataclasses.dataclass
class _Log:
    node: str
    upstream_ms: float | None
    response_bytes: int
    code: int = 0


def _limit_key(request: web.BaseRequest, limit: route_plugins.LimitCount) -> str:
    """The value limit-count counts by: the constant, or the variable (remote_addr when the
    variable is empty, as APISIX falls back)."""
    if limit.key_type == "constant":
        return limit.key
    remote = request.remote or ""
    if limit.key.startswith("http_"):
        value = request.headers.get(limit.key[5:].replace("_", "-"), "")
        return value or remote
    if limit.key == "server_addr":
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return str(sockname[0]) if sockname else remote
    return remote


def _rewrite_headers(headers: CIMultiDict[str], rewrite: route_plugins.Rewrite) -> None:
    """proxy-rewrite's header changes, in APISIX's order: add, set, remove; then ``host``."""
    for name, value in rewrite.add_headers:
        headers.add(name, value)
    for name, value in rewrite.set_headers:
        headers[name] = value
    for name in rewrite.remove_headers:
        headers.popall(name, None)
    if rewrite.host:
        headers["Host"] = rewrite.host


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _request_size(request: web.BaseRequest, body_length: int) -> int:
    """Approximately nginx's ``$request_length``: request line, headers and body."""
    line = len(request.method) + len(request.raw_path) + 12
    headers = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
    return line + headers + 2 + body_length


def _headers_size(response: web.StreamResponse) -> int:
    return 17 + sum(len(k) + len(v) + 4 for k, v in response.headers.items()) + 2

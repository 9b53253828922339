"""``NameProxy``: a plain HTTP forward proxy that makes in-cluster names work outside a cluster.

Clients use it through ``HTTP_PROXY`` and send absolute-form requests
(``GET http://flagger-loadtester.test/ HTTP/1.1``). In-cluster names (see ``naming``) are
resolved through the simulator's Services and Endpoints, watched over HTTP like the gateway
does, to a ready endpoint (round-robin per Service port); other hosts are dialled directly.
Answers of its own, always ``text/plain`` with an ``X-Sandbox-Proxy-Error`` header:
``502`` unknown in-cluster name / port or connection failure, ``503`` no ready endpoint,
``504`` upstream timeout, ``400`` a request that is not absolute-form, ``501`` ``CONNECT``.

    async with NameProxy(kube_url=cluster.url) as proxy:
        await proxy.wait_synced()
        async with aiohttp.ClientSession() as s:
            await s.get("http://podinfo.test/", proxy=proxy.url)
"""

from __future__ import annotations

import dataclasses
import logging

import aiohttp
from aiohttp import web
from yarl import URL

from sandbox import kubewatch, serving
from sandbox.gateway.proxying import filter_headers
from sandbox.proxy import naming

logger = logging.getLogger(__name__)

_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    connect_timeout: float = 5.0  # seconds to connect to the target
    read_timeout: float = 60.0  # seconds of silence allowed from the target
    shutdown_timeout: float = 5.0  # seconds in-flight requests get at stop
    sync_timeout: float = 10.0  # default of wait_synced, seconds
    watch: kubewatch.WatchSettings = dataclasses.field(default_factory=kubewatch.WatchSettings)


class NameProxy(serving.Component):
    def __init__(
        self,
        kube_url: str,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: ProxySettings | None = None,
    ) -> None:
        self.settings = settings or ProxySettings()
        self.host, self._port = host, port
        self.watcher = kubewatch.Watcher(
            kube_url,
            (kubewatch.SERVICES, kubewatch.ENDPOINTS),
            lambda _i: None,
            self.settings.watch,
        )
        self._rr: dict[tuple[str, str, int], int] = {}
        self._sites = serving.Sites()
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        try:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            runner = web.ServerRunner(
                web.Server(self.handle, access_log=None),
                shutdown_timeout=self.settings.shutdown_timeout,
            )
            self.url = await self._sites.add(runner, self.host, self._port)
            await self.watcher.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await self.watcher.stop()
        await self._sites.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until Services and Endpoints have been listed once."""
        await self.watcher.wait_synced(self.settings.sync_timeout if timeout is None else timeout)

    def resolve(self, host: str, port: int) -> tuple[str, int]:
        """Where a request for ``host:port`` goes; ``naming.ResolveError`` when nowhere."""
        name = naming.cluster_name(host)
        if name is None:
            return host, port
        addresses = naming.resolve(
            name,
            port,
            self.watcher.cache(kubewatch.SERVICES),
            self.watcher.cache(kubewatch.ENDPOINTS),
        )
        key = (name.namespace, name.service, port)
        index = self._rr.get(key, 0)
        self._rr[key] = index + 1
        return addresses[index % len(addresses)]

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "CONNECT":
            return _error(
                501, "CONNECT is not supported; use plain http:// URLs through this proxy"
            )
        raw = request.raw_path
        if not raw.lower().startswith("http://"):
            return _error(
                400, f"not a proxy request (absolute-form http:// URI expected), got {raw[:100]!r}"
            )
        authority_end = len(raw)
        for sep in ("/", "?"):
            found = raw.find(sep, len("http://"))
            if found != -1:
                authority_end = min(authority_end, found)
        path_qs = raw[authority_end:] or "/"
        if path_qs.startswith("?"):
            path_qs = "/" + path_qs
        target = request.url
        host, port = target.raw_host or "", target.port or 80
        if not self.watcher.synced() and naming.cluster_name(host) is not None:
            return _error(503, "the name proxy has not listed Services and Endpoints yet")
        try:
            dial_host, dial_port = self.resolve(host, port)
        except naming.ResolveError as e:
            return _error(e.status, str(e))

        headers = filter_headers(request.headers)
        skip = [h for h in _AUTO_HEADERS if h not in headers]
        body = await request.content.read()
        dial = f"[{dial_host}]" if ":" in dial_host else dial_host
        url = URL(f"http://{dial}:{dial_port}{path_qs}", encoded=True)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout,
        )
        assert self._session is not None, "NameProxy.start() was not awaited"
        started = False
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=skip,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in filter_headers(upstream.headers).items():
                    if key.lower() != "content-length":
                        response.headers.add(key, value)
                if upstream.content_length is not None and request.method != "HEAD":
                    response.content_length = upstream.content_length
                started = True
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except TimeoutError:
            if started:
                raise
            return _error(504, f"{host}:{port} ({dial_host}:{dial_port}) did not answer in time")
        except aiohttp.ClientError as e:
            if started:
                raise
            return _error(502, f"cannot reach {host}:{port} ({dial_host}:{dial_port}): {e}")


def _error(status: int, message: str) -> web.Response:
    logger.info("name proxy: %d %s", status, message)
    return web.Response(
        status=status,
        text=f"sandbox name proxy: {message}\n",
        headers={"X-Sandbox-Proxy-Error": message[:200]},
    )

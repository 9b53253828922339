"""APISIX's ``proxy-mirror`` plugin: its configuration schema and the mirrored copies.

Configuration (``apisix/plugins/proxy-mirror.lua``), checked by ``parse``; a bad config is a
``ConfigError`` naming the field, which the translation turns into a rule that does not reach
the data plane (as APISIX's Admin API refuses the route):

* ``host`` (required): scheme and authority, no path — ``http://127.0.0.1:8081``,
  ``http://podinfo-canary.test.svc.cluster.local:80``. APISIX also takes ``grpc(s)://``; the
  sandbox mirrors HTTP only and rejects those;
* ``path``: ``/`` followed by no ``?`` or ``&``; ``path_concat_mode`` ``replace`` (default:
  the copy goes to ``path``) or ``prefix`` (``path`` + the request's path);
* ``sample_ratio``: a number in [0.00001, 1], default 1 — each request is copied with that
  probability.

Where copies go: an in-cluster host (``<svc>.<ns>.svc.cluster.local`` and the shorter forms,
``sandbox.proxy.naming``) is resolved through the Services and Endpoints the gateway watches,
to the Service's ready endpoints (round-robin, as kube-proxy spreads connections); any other
host is dialled as written. The copy carries the request's method, path, query, headers (the
same the upstream gets, ``Host`` included) and body. ``Mirrors`` sends it in the background: the
client's response never waits for it, its answer is read and discarded, and its failures are
only logged. Copies are not seen by the prometheus plugin (they are not requests to a route).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from sandbox.gateway import balancing

logger = logging.getLogger(__name__)

PLUGIN = "proxy-mirror"
MIN_RATIO = 0.00001
_HOST = re.compile(r"^(http|https)://([^/]+)$")
_GRPC = re.compile(r"^grpcs?://[^/]+$")
_PATH = re.compile(r"^/[^?&]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ConfigError(Exception):
    """A ``proxy-mirror`` config APISIX's schema refuses; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Mirror:
    """One route's ``proxy-mirror``, with the addresses its host leads to now."""

    host: str  # as configured: scheme://authority
    scheme: str
    authority: str  # host[:port] of the URL
    path: str = ""
    path_concat_mode: str = "replace"
    sample_ratio: float = 1.0
    targets: tuple[tuple[str, int], ...] = ()  # where copies are dialled
    error: str = ""  # why there are no targets

    def path_for(self, uri: str) -> str:
        """The copy's path (without query) for a request to ``uri``."""
        if not self.path:
            return uri
        return self.path + uri if self.path_concat_mode == "prefix" else self.path


def parse(
    config: Any,
    path: str,
    services: Mapping[tuple[str, str], dict[str, Any]],
    endpoints: Mapping[tuple[str, str], dict[str, Any]],
) -> Mirror:
    """The plugin's config checked against APISIX's schema, its host resolved."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"Expected an object, got {config!r} - at {path}")
    host = config.get("host")
    if host is None:
        raise ConfigError(f"Expected host (required) - at {path}.host")
    if not isinstance(host, str):
        raise ConfigError(f"Expected a string, got {host!r} - at {path}.host")
    found = _HOST.match(host)
    if found is None:
        if _GRPC.match(host):
            raise ConfigError(
                f"Expected an http:// or https:// host (the sandbox does not mirror gRPC), "
                f"got {host!r} - at {path}.host"
            )
        raise ConfigError(
            "Expected a scheme http:// or https:// and a host without path "
            f"(e.g. http://127.0.0.1:8081), got {host!r} - at {path}.host"
        )
    scheme, authority = found.group(1), found.group(2)
    mirror_path = config.get("path", "")
    if "path" in config and not (isinstance(mirror_path, str) and _PATH.match(mirror_path)):
        raise ConfigError(
            f"Expected a path starting with / without ? or &, got {mirror_path!r} - at {path}.path"
        )
    mode = config.get("path_concat_mode", "replace")
    if mode not in ("replace", "prefix"):
        raise ConfigError(f"Expected replace|prefix, got {mode!r} - at {path}.path_concat_mode")
    ratio = config.get("sample_ratio", 1)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise ConfigError(f"Expected a number, got {ratio!r} - at {path}.sample_ratio")
    if not MIN_RATIO <= ratio <= 1:
        raise ConfigError(
            f"Expected a number from {MIN_RATIO} to 1, got {ratio!r} - at {path}.sample_ratio"
        )
    try:
        url = URL(f"{scheme}://{authority}")
        hostname, port = url.raw_host or "", url.port or _DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise ConfigError(f"Expected a valid host, got {host!r} ({e}) - at {path}.host") from e
    # here, not at the top: the name proxy's package imports the gateway's data plane
    from sandbox.proxy import naming

    targets: tuple[tuple[str, int], ...] = ()
    error = ""
    service = naming.cluster_name(hostname)
    if service is None:
        targets = ((hostname, port),)
    else:
        try:
            targets = tuple(naming.resolve(service, port, services, endpoints))
        except naming.ResolveError as e:
            error = str(e)
    return Mirror(
        host=host,
        scheme=scheme,
        authority=authority,
        path=mirror_path,
        path_concat_mode=mode,
        sample_ratio=float(ratio),
        targets=targets,
        error=error,
    )


class Mirrors:
    """Sends the copies: at most ``limit`` at a time (more are dropped and counted), each
    with ``timeout`` seconds in all; ``stop`` cancels those still running."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        timeout: float,
        limit: int,
        rng: random.Random | None = None,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.limit = limit
        self.rng = rng or random.Random()
        self.sent = 0  # copies answered (any status)
        self.failed = 0  # copies that got no answer
        self.dropped = 0  # copies not sent: ``limit`` reached or no target
        self._tasks: set[asyncio.Task[None]] = set()
        self._pickers: dict[str, tuple[object, balancing.RoundRobin[tuple[str, int]]]] = {}

    def sampled(self, mirror: Mirror) -> bool:
        return mirror.sample_ratio >= 1 or self.rng.random() < mirror.sample_ratio

    def copy(
        self,
        route: str,
        mirror: Mirror,
        method: str,
        uri: str,
        query: str,
        headers: CIMultiDict[str],
        body: bytes,
    ) -> None:
        """Send one copy in the background (the caller has decided it is sampled)."""
        cached = self._pickers.get(route)
        if cached is None or cached[0] != mirror.targets:
            cached = (mirror.targets, balancing.RoundRobin(mirror.targets))
            self._pickers[route] = cached
        target = cached[1].pick()
        if target is None or len(self._tasks) >= self.limit:
            self.dropped += 1
            if target is None:
                logger.info(
                    "route %s: mirror %s has no target: %s", route, mirror.host, mirror.error
                )
            return
        host, port = target
        host = f"[{host}]" if ":" in host else host
        path_qs = mirror.path_for(uri) + (f"?{query}" if query else "")
        url = URL(f"{mirror.scheme}://{host}:{port}{path_qs}", encoded=True)
        task = asyncio.get_running_loop().create_task(
            self._send(route, method, url, CIMultiDict(headers), body),
            name=f"mirror {route}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, route: str, method: str, url: URL, headers: CIMultiDict[str], body: bytes
    ) -> None:
        skip = [
            h
            for h in ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
            if h not in headers
        ]
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                skip_auto_headers=skip,
            ) as response:
                await response.read()  # discarded, as APISIX discards it
            self.sent += 1
        except (aiohttp.ClientError, TimeoutError) as e:
            self.failed += 1
            logger.info("route %s: mirrored request to %s failed: %r", route, url, e)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

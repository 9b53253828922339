"""Which upstream node serves a request, and how it is reached: APISIX's balancers per upstream.

* ``roundrobin`` (the default): each node in turn; nodes of different weights (Admin API and
  external nodes) by smooth weighted round-robin (weight 0: never). ``ewma`` is approximated
  by it (the sandbox keeps no latency averages);
* ``chash``: a hash ring (``balancing.HashRing``) keyed by the variable (``hash_on: vars``, e.g.
  ``remote_addr``, ``uri``, ``arg_x``), header, cookie or ``vars_combinations`` template
  (``$remote_addr$uri``) named by ``key``; an empty key value falls back to the client
  address, as APISIX does; retries walk on along the ring;
* ``least_conn``: the node with the fewest requests in flight (per unit of weight).

Pickers keep their state while an upstream's nodes are unchanged, like APISIX's per-version
balancer cache. ``dial`` maps a ClusterIP node onto the endpoints behind it (kube-proxy);
``resolve`` resolves a Domain node when the request is sent, as APISIX resolves domain nodes,
and the address it gives is the ``node`` the prometheus plugin reports. ``upstream_host`` is
``pass_host``'s Host for the upstream request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable

from sandbox.gateway import balancing, matching, upstreams

Node = upstreams.Node
NodePicker = balancing.RoundRobin[Node] | balancing.SmoothWeighted[Node]


class NodeChoice:
    def __init__(self) -> None:
        self._pickers: dict[str, tuple[object, NodePicker]] = {}
        self._rings: dict[str, tuple[object, balancing.HashRing[Node]]] = {}
        self._via: dict[tuple[str, int], tuple[object, balancing.RoundRobin[tuple[str, int]]]] = {}
        self._active: dict[str, int] = {}  # requests in flight per node address (least_conn)

    def picker(self, upstream: upstreams.Upstream) -> NodePicker:
        cached = self._pickers.get(upstream.name)
        if cached is None or cached[0] != upstream.nodes:
            picker: NodePicker
            weights = {n.weight for n in upstream.nodes}
            if len(weights) > 1 or 0 in weights:  # nodes with their own weights
                picker = balancing.SmoothWeighted([(n, n.weight) for n in upstream.nodes])
            else:
                picker = balancing.RoundRobin(upstream.nodes)
            cached = (upstream.nodes, picker)
            self._pickers[upstream.name] = cached
        return cached[1]

    def order(
        self,
        upstream: upstreams.Upstream,
        req: matching.Request | None,
        remote_addr: str,
        request_uri: str,
    ) -> Callable[[int], Node | None]:
        """The node for each attempt (0 first, then the retries) of one request."""
        settings = upstream.settings
        if settings.type == "chash":
            cached = self._rings.get(upstream.name)
            if cached is None or cached[0] != upstream.nodes:
                ring = balancing.HashRing([(n, n.address, n.weight) for n in upstream.nodes])
                cached = (upstream.nodes, ring)
                self._rings[upstream.name] = cached
            order = cached[1].walk(hash_key(settings, req, remote_addr, request_uri))
            return lambda attempt: order[attempt % len(order)] if order else None
        if settings.type == "least_conn":

            def least(_attempt: int) -> Node | None:
                live = [n for n in upstream.nodes if n.weight > 0]
                if not live:
                    return None
                return min(live, key=lambda n: self._active.get(n.address, 0) / n.weight)

            return least
        picker = self.picker(upstream)
        return lambda _attempt: picker.pick()

    def started(self, node: Node) -> None:
        self._active[node.address] = self._active.get(node.address, 0) + 1

    def finished(self, node: Node) -> None:
        left = self._active.get(node.address, 1) - 1
        if left > 0:
            self._active[node.address] = left
        else:
            self._active.pop(node.address, None)

    def dial(self, node: Node) -> tuple[str, int] | None:
        """Where to connect for a node: itself, or one of the endpoints behind a ClusterIP."""
        if not node.via:
            return None if node.host == "" else (node.host, node.port)
        key = (node.host, node.port)
        cached = self._via.get(key)
        if cached is None or cached[0] != node.via:
            cached = (node.via, balancing.RoundRobin(node.via))
            self._via[key] = cached
        return cached[1].pick()


def hash_key(
    settings: upstreams.Settings,
    req: matching.Request | None,
    remote_addr: str,
    request_uri: str = "",
) -> str:
    """The value ``chash`` hashes (the client address when it is empty)."""
    if req is None:
        return remote_addr
    variables = matching.Variables(req)

    def var(name: str) -> str:
        found = variables.get(name)
        if found:
            return found
        return {"remote_addr": remote_addr, "request_uri": request_uri, "host": req.host}.get(
            name, ""
        )

    if settings.hash_on == "header":
        value = var("http_" + settings.key.lower().replace("-", "_"))
    elif settings.hash_on == "cookie":
        value = var("cookie_" + settings.key)
    elif settings.hash_on == "vars_combinations":
        value = re.sub(r"\$(\w+)", lambda m: var(m.group(1)), settings.key)
    elif settings.hash_on == "consumer":
        value = ""  # no consumers in the sandbox
    else:
        value = var(settings.key)
    return value or remote_addr


def upstream_host(settings: upstreams.Settings, node: Node) -> str:
    """``pass_host`` node: the node's host (with its port unless 80/443); rewrite:
    ``upstream_host``."""
    if settings.pass_host == "rewrite":
        return settings.upstream_host
    port = "" if node.port in (80, 443) else f":{node.port}"
    return f"{node.host}{port}"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, timeout: float) -> str | None:
    """The first address of ``host`` (IPv4 preferred), None when it does not resolve."""
    try:
        async with asyncio.timeout(timeout):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError):
        return None
    addresses = [str(info[4][0]) for info in infos]
    v4 = [a for a in addresses if ":" not in a]
    return (v4 or addresses or [None])[0]

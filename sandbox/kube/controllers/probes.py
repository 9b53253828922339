"""Which ports a simulated container listens on and how its readiness is probed.

Port rule (one listener per port, all serving the same podinfo-like app):

1. every declared ``ports[].containerPort`` with protocol TCP (the default);
2. else the ``--port`` flag of ``command``/``args`` (podinfo's own flag);
3. else 9898, podinfo's default port, unless another container of the pod already took it
   (then the container runs without a listener).

Readiness rule: the sandbox cannot run exec probes (Flagger's podinfo uses
``podcli check http localhost:9898/readyz``), so every probe becomes a request to the pod IP:

* ``httpGet``: GET ``path`` on ``port`` (number or container port name); 200-399 is ready;
* ``exec`` with a ``[http://]localhost:<port>[/path]`` word (podcli, wget, curl): GET it
  (path defaults to ``/readyz``); any other exec command: GET ``/readyz`` on the first port;
* ``tcpSocket`` / ``grpc``: a TCP connect to the port;
* no probe: GET ``/readyz`` on the first port (podinfo's semantics, so ``SANDBOX_NEVER_READY``
  applies); a container without a listener is ready unless its app config says never.

``initialDelaySeconds`` and ``periodSeconds`` are not used: readiness is first checked after
``ClusterSettings.pod_ready_delay`` and then every ``ControllerSettings.probe_period_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from sandbox.app import config as app_config

DEFAULT_PORT = app_config.DEFAULT_PORT
_LOCAL_URL = re.compile(r"^(?:https?://)?(?:localhost|127\.0\.0\.1|0\.0\.0\.0):(\d+)(/\S*)?$")


@dataclasses.dataclass(frozen=True)
class Target:
    kind: str  # "http" | "tcp"
    port: int
    path: str = "/readyz"


def declared_ports(container: Mapping[str, Any]) -> list[int]:
    ports = []
    for item in container.get("ports") or ():
        if str(item.get("protocol") or "TCP").upper() != "TCP":
            continue
        try:
            ports.append(int(item["containerPort"]))
        except (KeyError, TypeError, ValueError):
            continue
    return ports


def flag_port(container: Mapping[str, Any]) -> int | None:
    words = [*(container.get("command") or ()), *(container.get("args") or ())]
    value = app_config.parse_flags([str(w) for w in words]).get("port")
    try:
        port = int(value) if value is not None else None
    except ValueError:
        return None
    return port if port is not None and 0 < port < 65536 else None


def listen_ports(containers: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Ports each container listens on, by the rule in the module docstring."""
    result: list[list[int]] = []
    taken: set[int] = set()
    for container in containers:
        ports = declared_ports(container)
        if not ports:
            port = flag_port(container)
            if port is None and DEFAULT_PORT not in taken:
                port = DEFAULT_PORT
            ports = [port] if port is not None else []
        ports = [p for p in dict.fromkeys(ports) if p not in taken]
        taken.update(ports)
        result.append(ports)
    return result


def _named_port(container: Mapping[str, Any], port: Any) -> int | None:
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for item in container.get("ports") or ():
        if item.get("name") == text:
            try:
                return int(item["containerPort"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


def readiness_target(container: Mapping[str, Any], ports: Sequence[int]) -> Target | None:
    """What to probe for a container (None: no listener to probe; see module docstring)."""
    probe = container.get("readinessProbe") or {}
    first = ports[0] if ports else None
    if "httpGet" in probe:
        http = probe["httpGet"] or {}
        port = _named_port(container, http.get("port"))
        if port is not None:
            return Target("http", port, http.get("path") or "/")
    for kind in ("tcpSocket", "grpc"):
        if kind in probe:
            port = _named_port(container, (probe[kind] or {}).get("port"))
            if port is not None:
                return Target("tcp", port)
    if "exec" in probe:
        for word in (probe["exec"] or {}).get("command") or ():
            match = _LOCAL_URL.match(str(word))
            if match:
                return Target("http", int(match.group(1)), match.group(2) or "/readyz")
    return Target("http", first) if first is not None else None


async def check(
    target: Target, ip: str, *, session: aiohttp.ClientSession, timeout: float
) -> tuple[bool, str]:
    """(ready?, failure message as a kubelet would word it)."""
    if target.kind == "tcp":
        try:
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_connection(ip, target.port)
        except (OSError, TimeoutError) as exc:
            return False, f"dial tcp {ip}:{target.port}: {exc or 'timeout'}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, ""
    url = f"http://{ip}:{target.port}{target.path}"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
            if 200 <= response.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {response.status}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return False, f'Get "{url}": {exc or type(exc).__name__}'

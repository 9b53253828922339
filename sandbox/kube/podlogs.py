"""``pods/log``: the running containers' log lines, served as a real kubelet would.

The simulated kubelet registers each container's ``LogBuffer`` while the container runs
(``of(store).add``) and removes it when it stops; the API server's ``GET .../pods/<name>/log``
finds it through the same store, so one process may run several clusters. Query parameters:
``container``, ``tailLines``, ``sinceSeconds``, ``timestamps``, ``follow``.

``pods/<name>/portforward``, ``exec`` and ``attach`` need a SPDY or websocket stream, which the
simulator does not speak: they get a ``Status`` saying so.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from aiohttp import web

from sandbox.app import logs
from sandbox.kube import registry, status
from sandbox.kube.store import Store

STREAMING_SUBRESOURCES = ("portforward", "exec", "attach")

Key = tuple[str, str, str]  # namespace, pod, container


class PodLogs:
    """Log buffers of the running containers, by (namespace, pod, container)."""

    def __init__(self) -> None:
        self._buffers: dict[Key, tuple[str, logs.LogBuffer]] = {}

    def add(self, namespace: str, pod: str, container: str, uid: str, buf: logs.LogBuffer) -> None:
        self._buffers[(namespace, pod, container)] = (uid, buf)

    def remove(self, namespace: str, pod: str, container: str, uid: str) -> None:
        current = self._buffers.get((namespace, pod, container))
        if current is not None and current[0] == uid:  # a newer pod of that name keeps its own
            del self._buffers[(namespace, pod, container)]

    def get(self, namespace: str, pod: str, container: str, uid: str) -> logs.LogBuffer | None:
        current = self._buffers.get((namespace, pod, container))
        return current[1] if current is not None and current[0] == uid else None


_by_store: weakref.WeakKeyDictionary[Store, PodLogs] = weakref.WeakKeyDictionary()


def of(store: Store) -> PodLogs:
    """The log buffers of the cluster that owns ``store``."""
    found = _by_store.get(store)
    if found is None:
        found = _by_store[store] = PodLogs()
    return found


def _int_param(request: web.Request, name: str, *, minimum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise status.BadRequest(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise status.BadRequest(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise status.BadRequest(f"{name}: expected true or false, got {raw!r}")
    return raw in ("true", "1")


def _container(pod: dict[str, Any], requested: str | None) -> str:
    name = pod["metadata"]["name"]
    names = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or ()]
    if requested is None or requested == "":
        if len(names) == 1:
            return names[0]
        raise status.BadRequest(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
        )
    if requested not in names:
        raise status.BadRequest(f"container {requested} is not valid for pod {name}")
    return requested


def _format(line: logs.Line, stamps: bool) -> bytes:
    moment, text = line
    return ((logs.timestamp(moment) + " " if stamps else "") + text + "\n").encode()


async def serve(
    store: Store, stop: asyncio.Event, request: web.Request, namespace: str, pod_name: str
) -> web.StreamResponse:
    """``GET /api/v1/namespaces/<ns>/pods/<name>/log``."""
    pod = store.get(registry.PODS, namespace, pod_name)
    container = _container(pod, request.query.get("container"))
    tail = _int_param(request, "tailLines", minimum=0)
    since_seconds = _int_param(request, "sinceSeconds", minimum=1)
    stamps = _bool_param(request, "timestamps")
    follow = _bool_param(request, "follow")
    buf = of(store).get(namespace, pod_name, container, pod["metadata"]["uid"])
    if buf is None:
        raise status.BadRequest(
            f'container "{container}" in pod "{pod_name}" is waiting to start: ContainerCreating'
        )
    since = time.time() - since_seconds if since_seconds is not None else None
    body = b"".join(_format(line, stamps) for line in buf.lines(tail=tail, since=since))
    if not follow:
        return web.Response(body=body, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(body)
    try:
        async for line in buf.follow(stop):
            await response.write(_format(line, stamps))
    except ConnectionResetError:
        return response  # kubectl went away
    await response.write_eof()
    return response


def not_simulated(subresource: str, pod_name: str) -> status.BadRequest:
    return status.BadRequest(
        f"pods/{subresource} is not simulated: the sandbox API server does not serve SPDY or "
        f"websocket streams, so {subresource} to pod {pod_name} is unavailable; reach the pod "
        "by its IP (kubectl get pod -o wide) or through its Service instead"
    )

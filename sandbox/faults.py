"""Fault switches: test controls that make the simulated outside systems misbehave on purpose.

Every switch is off by default and lives in the simulator's own process; a test turns one on
over HTTP at ``/sandbox/faults``, a path outside the Kubernetes API's URL space (kubectl and
the official client never ask for it):

* on the Kubernetes API server (``KUBE_URL``): ``kube-503`` answers every matching request with
  a 503 ``Status`` (reason ``ServiceUnavailable``) for ``seconds``; ``kube-timeout`` holds every
  matching request without answering for ``seconds`` (then serves it, as a stalled apiserver
  that recovers would); ``drop-watches`` ends every open watch stream at once (clients resume
  from their last resourceVersion) and, given ``seconds``, keeps doing so for that long: every
  watch opened meanwhile sends what it starts with and ends within ``DROP_AFTER_S``, as behind a
  load balancer that keeps cutting long requests; ``pod-unready`` makes the kubelet report the named
  ``pods`` (``namespace/name``) not ready for ``seconds`` whatever their probes answer, as a
  pod whose readiness check fails for a while (Endpoints drop it, the Deployment loses an
  available replica), then ready again at the next probe. ``verbs`` (``GET``, ``PATCH``, …) and ``paths`` (path
  prefixes, e.g. ``/apis/flagger.app/``) narrow ``kube-503`` / ``kube-timeout`` to matching
  requests; a request with the header ``X-Sandbox-Unfaulted: 1`` is never faulted (an
  observer that must keep seeing the cluster).
* on the gateway's export listener (``GATEWAY_METRICS_URL``'s host): ``metrics-gone`` answers
  ``/apisix/prometheus/metrics`` with 503 for ``seconds``, so Prometheus' scrapes fail and the
  series go stale, as when APISIX's exporter disappears.

``POST /sandbox/faults`` with a JSON body ``{"fault": "kube-503", "seconds": 10, "verbs":
["PATCH"], "paths": ["/apis/flagger.app/"]}`` or ``{"fault": "pod-unready", "seconds": 10,
"pods": ["test/podinfo-7d9f8-abcde"]}`` switches one on (200 with the active switches);
``{"fault": "clear"}`` switches everything off; ``GET /sandbox/faults`` lists what is active.
A bad body is a 400 naming the field and what was expected. ``python -m sandbox fault`` is
the same from a shell.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

PATH = "/sandbox/faults"
UNFAULTED_HEADER = "X-Sandbox-Unfaulted"
KUBE_FAULTS = ("kube-503", "kube-timeout", "drop-watches", "pod-unready", "clear")
POD_UNREADY = "pod-unready"
GATEWAY_FAULTS = ("metrics-gone", "clear")
MAX_SECONDS = 3600.0
DROP_AFTER_S = 1.0  # how long a watch opened during a drop-watches window lives
VERBS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


class FaultError(ValueError):
    """A fault request that does not parse; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Request:
    fault: str
    seconds: float = 0.0
    verbs: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()
    pods: tuple[str, ...] = ()  # namespace/name, for pod-unready

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"fault": self.fault}
        if self.seconds:
            body["seconds"] = self.seconds
        if self.verbs:
            body["verbs"] = sorted(self.verbs)
        if self.paths:
            body["paths"] = list(self.paths)
        if self.pods:
            body["pods"] = list(self.pods)
        return body


def parse(body: Any, allowed: Sequence[str]) -> Request:
    """A fault request from a decoded JSON body; ``FaultError`` names what is wrong."""
    if not isinstance(body, dict):
        raise FaultError(f"body: expected a JSON object, got {type(body).__name__}")
    fault = body.get("fault")
    if fault not in allowed:
        raise FaultError(f"fault: expected one of {', '.join(allowed)}, got {fault!r}")
    seconds = body.get("seconds")
    timed = fault != "clear" and (fault != "drop-watches" or seconds is not None)
    if timed:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise FaultError(f"seconds: expected a number of seconds, got {seconds!r}")
        if not 0 < seconds <= MAX_SECONDS:
            raise FaultError(f"seconds: expected more than 0 and at most {MAX_SECONDS:g}")
    verbs = body.get("verbs", [])
    if not isinstance(verbs, list) or any(v not in VERBS for v in verbs):
        raise FaultError(f"verbs: expected a list of {', '.join(sorted(VERBS))}, got {verbs!r}")
    paths = body.get("paths", [])
    if not isinstance(paths, list) or any(
        not isinstance(p, str) or not p.startswith("/") for p in paths
    ):
        raise FaultError(f"paths: expected a list of path prefixes starting with /, got {paths!r}")
    pods = body.get("pods", [])
    if not isinstance(pods, list) or any(not _pod_key(p) for p in pods):
        raise FaultError(f"pods: expected a list of namespace/name, got {pods!r}")
    if fault == POD_UNREADY and not pods:
        raise FaultError("pods: expected at least one namespace/name for pod-unready")
    if fault != POD_UNREADY and pods:
        raise FaultError(f"pods: only pod-unready takes pods, not {fault}")
    unknown = set(body) - {"fault", "seconds", "verbs", "paths", "pods"}
    if unknown:
        raise FaultError(
            f"{sorted(unknown)[0]}: unknown field (expected fault, seconds, verbs, paths, pods)"
        )
    duration = float(seconds) if timed and isinstance(seconds, int | float) else 0.0
    return Request(str(fault), duration, frozenset(verbs), tuple(paths), tuple(pods))


def _pod_key(value: object) -> bool:
    if not isinstance(value, str):
        return False
    namespace, sep, name = value.partition("/")
    return bool(sep and namespace and name and "/" not in name)


@dataclasses.dataclass
class _Window:
    request: Request
    until: float  # time.monotonic()

    def left(self) -> float:
        return self.until - time.monotonic()

    def matches(self, method: str, path: str) -> bool:
        verbs, paths = self.request.verbs, self.request.paths
        return (not verbs or method in verbs) and (not paths or path.startswith(paths))


class Switches:
    """The active fault windows of one simulator process (all off at first)."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._drop = asyncio.Event()

    def apply(self, request: Request) -> None:
        if request.fault == "clear":
            self._windows.clear()
        elif request.fault == "drop-watches":
            self._drop.set()
            self._drop = asyncio.Event()  # watches opened from now on live on ...
            if request.seconds:  # ... unless they open within the window
                self._windows[request.fault] = _Window(request, time.monotonic() + request.seconds)
        elif request.fault == POD_UNREADY:  # a window per pod
            until = time.monotonic() + request.seconds
            for pod in request.pods:
                one = dataclasses.replace(request, pods=(pod,))
                self._windows[f"{POD_UNREADY} {pod}"] = _Window(one, until)
        else:
            self._windows[request.fault] = _Window(request, time.monotonic() + request.seconds)

    def active(self, fault: str, method: str = "", path: str = "") -> float:
        """Seconds left of ``fault`` for this request (0 when it does not apply)."""
        window = self._windows.get(fault)
        if window is None:
            return 0.0
        left = window.left()
        if left <= 0:
            del self._windows[fault]
            return 0.0
        return left if not method or window.matches(method, path) else 0.0

    def pod_unready(self, namespace: str, name: str) -> float:
        """Seconds the pod's readiness stays paused (0 when it is not)."""
        return self.active(f"{POD_UNREADY} {namespace}/{name}")

    def watch_lifetime(self) -> float | None:
        """How long a watch opened now may live: ``DROP_AFTER_S`` within a ``drop-watches``
        window, else None (until it ends by itself)."""
        return DROP_AFTER_S if self.active("drop-watches") > 0 else None

    @property
    def dropped(self) -> asyncio.Event:
        """Set when ``drop-watches`` fires; a watch keeps the event current when it opened."""
        return self._drop

    def to_json(self) -> dict[str, Any]:
        active = []
        for name in list(self._windows):
            if self.active(name) > 0:
                window = self._windows[name]
                active.append(window.request.to_json() | {"left": round(window.left(), 3)})
        return {"active": active}


SWITCHES = web.AppKey("sandbox_faults", Switches)


def add_routes(app: web.Application, switches: Switches, allowed: Sequence[str]) -> None:
    """``GET`` / ``POST /sandbox/faults`` on ``app``, controlling ``switches``."""

    async def show(_request: web.Request) -> web.Response:
        return web.json_response(switches.to_json())

    async def change(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return web.json_response({"error": "body: expected JSON"}, status=400)
        try:
            parsed = parse(body, allowed)
        except FaultError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        switches.apply(parsed)
        return web.json_response(switches.to_json())

    app[SWITCHES] = switches
    app.router.add_get(PATH, show)
    app.router.add_post(PATH, change)


def is_control(path: str) -> bool:
    return path == PATH


def send(
    base_url: str, body: Mapping[str, Any] | list[Any], timeout: float = 5.0
) -> dict[str, Any]:
    """``POST`` a fault request to a simulator at ``base_url`` (no proxy); its answer as JSON.
    ``FaultError`` with the simulator's message on a 400."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + PATH,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 400:
            raise FaultError(json.loads(exc.read()).get("error", "bad request")) from exc
        raise
    return answer

"""Watch streams: ``GET ...?watch=1``, one JSON event per line over chunked HTTP.

As a real API server (with its watch cache):

* no ``resourceVersion`` (or ``0``): synthetic ``ADDED`` events for the current objects, then
  changes; an explicit one: changes after it, replayed from the history;
* a ``resourceVersion`` older than the history: HTTP 200 and a single ``ERROR`` event holding a
  410 ``Expired`` ``Status`` ("too old resource version"), then the stream ends — what
  client-go and the python client's ``Watch`` expect;
* ``allowWatchBookmarks=true``: a ``BOOKMARK`` event (kind, apiVersion, resourceVersion only)
  every ``ClusterSettings.bookmark_interval`` seconds of quiet;
* ``timeoutSeconds``: the stream ends after that long; server shutdown ends it too;
* label and field selectors filter events by comparing the object before and after each
  change, as the watch cache does: an object that starts matching comes as ``ADDED``, one
  that stops matching as ``DELETED`` (its last matching state, at the event's
  resourceVersion); ``Accept: ...as=Table`` wraps each object in a one-row ``Table``
  (``kubectl get -w``);
* a watcher that falls ``fanout.QUEUE_LIMIT`` events behind has its stream ended; clients
  resume from the last resourceVersion they saw. The ``drop-watches`` test control
  (``sandbox.faults``) ends every open stream the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox import faults
from sandbox.kube import fanout, handlers, selectors, status, tables
from sandbox.kube.store import Gone, Subscription, WatchEvent

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _since(raw: str | None) -> int | None:
    if not raw or raw == "0":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise status.BadRequest(
            f'resourceVersion: Invalid value: "{raw}": must be an integer'
        ) from exc


def _timeout(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError as exc:
        raise status.BadRequest(f'timeoutSeconds: Invalid value: "{raw}"') from exc


async def _next(
    sub: Subscription, stops: tuple[asyncio.Event, ...], timeout: float | None
) -> WatchEvent | None:
    """The next event, or None on timeout, shutdown or a dropped watch (any of ``stops``; the
    queue keeps what was not taken)."""
    if not sub.queue.empty():
        return sub.queue.get_nowait()
    getter = asyncio.ensure_future(sub.queue.get())
    stoppers = [asyncio.ensure_future(stop.wait()) for stop in stops]
    try:
        done, _ = await asyncio.wait(
            {getter, *stoppers}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for stopper in stoppers:
            stopper.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    return None


async def serve(
    api: handlers.Api, request: web.Request, target: handlers.Target
) -> web.StreamResponse:
    rtype = target.rtype
    query = request.query
    labels = selectors.parse_labels(query.get("labelSelector"))
    fields = selectors.parse_fields(query.get("fieldSelector"))
    since = _since(query.get("resourceVersion"))
    timeout = _timeout(query.get("timeoutSeconds"))
    bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
    as_table = tables.wants_table(request.headers.get("Accept", ""))
    switches = request.app[faults.SWITCHES]
    dropped = switches.dropped  # drop-watches sets it (sandbox.faults)
    lifetime = switches.watch_lifetime()  # within a drop-watches window: cut soon
    include = query.get("includeObject", "Metadata")

    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()

    def matches(obj: Obj) -> bool:
        if target.name is not None and obj["metadata"].get("name") != target.name:
            return False
        if labels is not None and not labels(obj["metadata"].get("labels") or {}):
            return False
        return fields is None or fields(obj)

    def encode(kind: str, obj: Obj) -> bytes:
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            obj = handlers.in_version(obj, rtype)
            if as_table:
                obj = tables.table(rtype, [obj], None, include)
        return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()

    try:
        sub = api.store.subscribe(rtype, target.namespace, since)
    except Gone as exc:
        await response.prepare(request)
        await response.write(encode("ERROR", status.failure(exc)))
        await response.write_eof()
        return response
    try:
        if since is None:
            current, _ = api.store.list(rtype, target.namespace)
            initial = [obj for obj in current if matches(obj)]
        else:
            initial = []
        await response.prepare(request)
        for obj in initial:
            await response.write(encode("ADDED", obj))
        for event in sub.backlog:
            if (shown := _filtered(event, matches)) is not None:
                await response.write(encode(*shown))
        if lifetime is not None:
            timeout = lifetime if timeout is None else min(timeout, lifetime)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not api.stop.is_set():
            wait = api.settings.bookmark_interval if bookmarks else None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = left if wait is None else min(wait, left)
            event = await _next(sub, (api.stop, dropped), wait)
            if dropped.is_set():
                log.info("dropping the watch of %s (sandbox fault drop-watches)", request.path)
                break
            if event is None:
                if bookmarks and not api.stop.is_set():
                    await response.write(encode("BOOKMARK", _bookmark(api, rtype, as_table)))
                continue
            if event is fanout.CLOSED:
                log.info("watch of %s fell too far behind; ending it", request.path)
                break
            if (shown := _filtered(sub.convert(event), matches)) is not None:
                await response.write(encode(*shown))
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    except ConnectionError:
        log.debug("watch client went away: %s", request.path)
    finally:
        sub.close()
    return response


def _filtered(event: WatchEvent, matches: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
    """What a filtered watch sends for ``event``: (type, object), or None for nothing."""
    now = event.type != "DELETED" and matches(event.object)
    before = event.previous is not None and matches(event.previous)
    if now:
        return ("ADDED" if event.type == "ADDED" or not before else "MODIFIED"), event.object
    if before:
        assert event.previous is not None
        gone = copy.deepcopy(event.previous)
        gone["metadata"]["resourceVersion"] = str(event.resource_version)
        return "DELETED", gone
    return None


def _bookmark(api: handlers.Api, rtype: Any, as_table: bool) -> Obj:
    meta = {"resourceVersion": str(api.store.resource_version)}
    if as_table:
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "columnDefinitions": [],
            "rows": [],
        }
    return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta}

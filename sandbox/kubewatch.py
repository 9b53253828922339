"""A small Kubernetes list + watch client over plain HTTP, for the sandbox's outside systems.

The APISIX gateway simulator (``sandbox.gateway``) and the in-cluster name proxy
(``sandbox.proxy``) stand for systems that live outside the API server — apisix-ingress-controller,
cluster DNS and kube-proxy — so they see the cluster only through its REST + watch protocol, as
client-go's reflector does:

* **list** the resource across all namespaces (``limit``/``continue`` paging), replace the cache,
  remember the list's ``resourceVersion``;
* **watch** from that version (``watch=1&resourceVersion=...&allowWatchBookmarks=true``), apply
  ``ADDED``/``MODIFIED``/``DELETED`` to the cache, move the version on with every event and
  ``BOOKMARK``;
* on ``410 Gone`` or an ``ERROR`` event: list again; on a dropped or silent stream: reconnect
  the watch from the last version after a backoff; on anything else (404 while a CRD is not yet
  installed, connection refused): back off and list again.

Every request carries a timeout; a watch stream that stays silent longer than
``WatchSettings.read_timeout`` is treated as dropped. The cache is a plain dict that
``on_change`` callbacks read; it is only written from the informer's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import pathlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import yaml

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


class KubeconfigError(Exception):
    """The kubeconfig file cannot give the API server's address."""


def server_from_kubeconfig(path: str | pathlib.Path) -> str:
    """The ``server`` URL of the current context's cluster in a kubeconfig file."""
    try:
        config = yaml.safe_load(pathlib.Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {e}") from e
    if not isinstance(config, dict):
        raise KubeconfigError(f"kubeconfig {path}: expected a mapping at $")
    current = config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    if current not in contexts:
        raise KubeconfigError(f"kubeconfig {path}: current-context {current!r} not in $.contexts")
    cluster_name = contexts[current].get("cluster")
    clusters = {c.get("name"): c.get("cluster") or {} for c in config.get("clusters") or []}
    server = clusters.get(cluster_name, {}).get("server")
    if not server:
        raise KubeconfigError(
            f"kubeconfig {path}: no server for cluster {cluster_name!r} at $.clusters[].cluster.server"
        )
    return str(server).rstrip("/")


@dataclasses.dataclass(frozen=True)
class Resource:
    """One listable resource type, addressed across all namespaces."""

    group: str  # "" for the core group
    version: str
    plural: str

    @property
    def path(self) -> str:
        if self.group:
            return f"/apis/{self.group}/{self.version}/{self.plural}"
        return f"/api/{self.version}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


SERVICES = Resource("", "v1", "services")
ENDPOINTS = Resource("", "v1", "endpoints")
APISIX_ROUTES = Resource("apisix.apache.org", "v2", "apisixroutes")
APISIX_UPSTREAMS = Resource("apisix.apache.org", "v2", "apisixupstreams")
APISIX_PLUGIN_CONFIGS = Resource("apisix.apache.org", "v2", "apisixpluginconfigs")
PODS = Resource("", "v1", "pods")


@dataclasses.dataclass(frozen=True)
class WatchSettings:
    # Seconds allowed for one list page (connect + full body).
    request_timeout: float = 10.0
    # Seconds for connecting a watch and receiving its response headers.
    connect_timeout: float = 5.0
    # Seconds a watch may stay silent (no event, no bookmark) before it is reconnected.
    read_timeout: float = 30.0
    # timeoutSeconds asked of the server per watch; jittered up to twice this, like client-go.
    watch_timeout: int = 300
    # Backoff between failed attempts, seconds: doubling from initial up to max, with jitter.
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    # Seconds an attempt must have lasted for the next one to start at once, without backoff.
    healthy_after: float = 1.0
    # Items per list page.
    page_size: int = 500


class _Relist(Exception):
    """The watch cannot resume from its resourceVersion (410 Gone or an ERROR event)."""


class _StatusError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def object_key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Informer:
    """Keeps ``cache`` equal to the server's objects of one resource; calls ``on_change`` after
    every list and every event that changed it. Run ``run()`` as a task; cancel it to stop."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        resource: Resource,
        on_change: Callable[[Informer], None] = lambda _informer: None,
        settings: WatchSettings | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.resource = resource
        self.on_change = on_change
        self.settings = settings or WatchSettings()
        self.cache: dict[Key, Obj] = {}
        self.synced = asyncio.Event()  # set after the first successful list
        self.resource_version = ""
        self.lists = 0  # how many times a full list was done (tests observe relists)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.settings.backoff_initial
        need_list = True
        while True:
            started = loop.time()
            try:
                if need_list:
                    await self._list()
                    need_list = False
                async for _ in self._watch():
                    backoff = self.settings.backoff_initial  # the stream works again
                # The server ended the watch (its timeoutSeconds): resume from the last version.
            except _Relist as e:
                logger.info("%s: %s; listing again", self.resource, e)
                need_list = True
            except (TimeoutError, aiohttp.ClientError) as e:
                # A dropped or silent stream, or the server unreachable: resume the watch.
                logger.info("%s: %s: %s", self.resource, type(e).__name__, e)
            except Exception as e:  # an error answer or a garbled stream: list afresh
                logger.warning("%s: %s: %s", self.resource, type(e).__name__, e)
                need_list = True
            if loop.time() - started > self.settings.healthy_after:
                backoff = self.settings.backoff_initial  # it worked for a while: retry at once
                continue
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.settings.backoff_max)

    async def _list(self) -> None:
        items: dict[Key, Obj] = {}
        cont = ""
        version = ""
        while True:
            params = {"limit": str(self.settings.page_size)}
            if cont:
                params["continue"] = cont
            timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
            async with self.session.get(
                self.base_url + self.resource.path, params=params, timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise _StatusError(resp.status, (await resp.text())[:200])
                body = await resp.json(content_type=None)
            for obj in body.get("items") or []:
                items[object_key(obj)] = obj
            meta = body.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            cont = meta.get("continue") or ""
            if not cont:
                break
        self.cache = items
        self.resource_version = version
        self.lists += 1
        self.synced.set()
        self.on_change(self)

    async def _watch(self) -> AsyncIterator[None]:
        timeout_seconds = int(self.settings.watch_timeout * random.uniform(1.0, 2.0))
        params = {
            "watch": "1",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout,
        )
        async with self.session.get(
            self.base_url + self.resource.path, params=params, timeout=timeout
        ) as resp:
            if resp.status == 410:
                raise _Relist("watch answered 410 Gone")
            if resp.status != 200:
                raise _StatusError(resp.status, (await resp.text())[:200])
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self._apply(json.loads(line))
                        yield None

    def _apply(self, event: Obj) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            raise _Relist(f"watch ERROR event: {obj.get('code')} {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        key = object_key(obj)
        if kind in ("ADDED", "MODIFIED"):
            self.cache[key] = obj
        elif kind == "DELETED":
            self.cache.pop(key, None)
        else:
            logger.warning("%s: unknown watch event type %r", self.resource, kind)
            return
        self.on_change(self)


class Watcher:
    """Several informers sharing one HTTP session: the cluster as an outside system sees it."""

    def __init__(
        self,
        base_url: str,
        resources: tuple[Resource, ...],
        on_change: Callable[[Informer], None],
        settings: WatchSettings | None = None,
    ) -> None:
        self.base_url = base_url
        self.resources = resources
        self._on_change = on_change
        self.settings = settings or WatchSettings()
        self.informers: dict[Resource, Informer] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        for resource in self.resources:
            informer = Informer(
                self._session, self.base_url, resource, self._on_change, self.settings
            )
            self.informers[resource] = informer
            self._tasks.append(asyncio.create_task(informer.run(), name=f"watch {resource}"))

    def cache(self, resource: Resource) -> dict[Key, Obj]:
        return self.informers[resource].cache

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers.values())

    def running(self) -> bool:
        """Every informer task is alive (they only end when stopped)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def wait_synced(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            for informer in self.informers.values():
                await informer.synced.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

"""The kubelet of the one simulated node: runs an app per container of every pod on the node.

For each pod bound to ``ControllerSettings.node_name`` (a pod created without ``nodeName`` is
bound first, standing in for the scheduler) a worker task:

1. takes a pod IP from ``ClusterSettings.pod_network`` (stable for the pod's life, never held by
   two live pods; the first host address is the node's ``hostIP``);
2. starts an app per container (``sandbox.app.PodApp`` unless an ``app_factory`` is given)
   listening on ``<podIP>:<port>`` for each port of ``probes.listen_ports``, with the
   container's environment resolved (``podenv``);
3. writes ``phase: Running``, IPs, ``startTime``, ``containerStatuses`` and the conditions
   PodScheduled / Initialized / ContainersReady / Ready (not ready yet);
4. after ``ClusterSettings.pod_ready_delay`` probes readiness (``probes``) every
   ``probe_period_s`` and writes Ready / ContainersReady when they change; while the fault
   switch ``pod-unready`` (``sandbox.faults``) names the pod, every probe counts as failed.

When the pod is deleted (or run is cancelled) the worker stops the apps and frees the IP.
Liveness probes, restarts, init containers and image changes of a running pod are not simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp

from sandbox import faults
from sandbox.app import logs as app_logs
from sandbox.app import server as app_server
from sandbox.kube import config as kconfig
from sandbox.kube import podlogs, registry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import events, ipam, objects, podenv, probes, reconciling
from sandbox.kube.controllers import settings as csettings

log = logging.getLogger(__name__)

COMPONENT = "kubelet"
Obj = kstore.Obj


class App(Protocol):
    ready: bool

    async def start(self, host: str, port: int) -> None: ...
    async def stop(self) -> None: ...


AppFactory = Callable[[Mapping[str, Any], Obj], App]  # (resolved container, pod) → app


class _Container:
    def __init__(self, spec: Mapping[str, Any], app: App, ports: list[int]) -> None:
        self.spec = spec
        self.app = app
        self.ports = ports
        self.error: str | None = None
        self.target = probes.readiness_target(spec, ports)
        self.ready = False
        self.probed = False
        self.started_at = objects.rfc3339(objects.now())
        self.container_id = "containerd://" + hashlib.sha256(repr(id(self)).encode()).hexdigest()


class Kubelet:
    def __init__(
        self,
        store: kstore.Store,
        cluster: kconfig.ClusterSettings,
        settings: csettings.ControllerSettings,
        app_factory: AppFactory | None = None,
        switches: faults.Switches | None = None,
    ) -> None:
        self.store = store
        self.switches = switches  # pod-unready pauses a pod's readiness
        self.cluster = cluster
        self.settings = settings
        self.ips = ipam.IPAllocator(cluster.pod_network)
        self.host_ip = str(cluster.pod_network.network_address + 1)
        self.app_factory = app_factory or self._default_app
        self.loop = reconciling.WorkLoop("kubelet", store, self.reconcile, settings)
        self.loop.watch(registry.PODS)
        self._workers: dict[reconciling.Key, tuple[str, asyncio.Task[None]]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._session: aiohttp.ClientSession | None = None

    def _default_app(self, container: Mapping[str, Any], pod: Obj) -> App:
        return app_server.PodApp(
            container,
            hostname=pod["metadata"]["name"],
            max_delay_s=self.settings.app_max_delay_s,
            shutdown_timeout_s=self.settings.app_shutdown_timeout_s,
        )

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    group.create_task(self.loop.run(), name="kubelet-loop")
            finally:
                self._group = None
                self._session = None

    # ---------------------------------------------------------------- pods → workers

    def reconcile(self, key: reconciling.Key) -> None:
        try:
            pod = self.store.get(registry.PODS, *key)
        except kstore.NotFound:
            self._stop(key)
            return
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if objects.is_terminating(pod) or status.get("phase") in ("Succeeded", "Failed"):
            self._stop(key)
            return
        if not spec.get("nodeName"):
            self._bind(pod)
            return
        if spec["nodeName"] != self.settings.node_name:
            return
        uid = pod["metadata"]["uid"]
        current = self._workers.get(key)
        if current is not None and current[0] == uid and not current[1].done():
            return
        if current is not None:
            self._stop(key)
        if self._group is None:
            return
        work = self._work(key, uid)
        try:
            task = self._group.create_task(work, name=f"kubelet-pod-{key[0]}/{key[1]}")
        except RuntimeError:  # the kubelet is stopping (Python 3.11 leaves the coroutine open)
            work.close()
            return
        self._workers[key] = (uid, task)

    def _stop(self, key: reconciling.Key) -> None:
        current = self._workers.pop(key, None)
        if current is not None:
            current[1].cancel()

    def _bind(self, pod: Obj) -> None:
        """The scheduler's part: bind the pod to the node and mark it scheduled."""
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = self.settings.node_name
        bound = self.store.update(registry.PODS, bound)
        status = copy.deepcopy(bound.get("status") or {})
        status.setdefault("phase", "Pending")
        objects.set_condition(status, "PodScheduled", "True", "", "", update_time=False)
        bound["status"] = status
        self.store.update(registry.PODS, bound, subresource="status")
        meta = pod["metadata"]
        events.record(
            self.store,
            pod,
            events.NORMAL,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {self.settings.node_name}",
            component="default-scheduler",
        )

    # ---------------------------------------------------------------- one pod

    async def _work(self, key: reconciling.Key, uid: str) -> None:
        containers: list[_Container] = []
        try:
            pod = self.store.get(registry.PODS, *key)
            ip = self._address(pod, uid)
            containers = await self._start(pod, ip)
            self._write(key, uid, containers, ip, first=True)
            await asyncio.sleep(self.cluster.pod_ready_delay)
            while True:
                await self._probe(key, uid, containers, ip)
                await asyncio.sleep(self.settings.probe_period_s)
        except kstore.NotFound:
            pass  # the pod is gone; its key's reconcile cleans up the worker entry
        except ipam.Exhausted as exc:
            log.error("pod %s/%s: %s", *key, exc)
        except Exception:
            log.exception("pod %s/%s: worker failed", *key)
        finally:
            for container in containers:
                podlogs.of(self.store).remove(*key, container.spec.get("name", ""), uid)
                with contextlib.suppress(Exception):
                    await container.app.stop()
            self.ips.release(uid)
            current = self._workers.get(key)
            if current is not None and current[0] == uid and current[1] is asyncio.current_task():
                self._workers.pop(key, None)

    def _address(self, pod: Obj, uid: str) -> str:
        existing = (pod.get("status") or {}).get("podIP")
        if existing and self.ips.reserve(uid, existing):
            return str(existing)
        return self.ips.allocate(uid)

    async def _start(self, pod: Obj, ip: str) -> list[_Container]:
        specs = list((pod.get("spec") or {}).get("containers") or ())
        port_lists = probes.listen_ports(specs)
        started = []
        for spec, ports in zip(specs, port_lists, strict=True):
            resolved = dict(spec)
            resolved["env"] = podenv.resolve(self.store, pod, spec)
            container = _Container(spec, self.app_factory(resolved, pod), ports)
            started.append(container)
            buf = getattr(container.app, "log_lines", None)
            if isinstance(buf, app_logs.LogBuffer):  # what kubectl logs prints
                meta = pod["metadata"]
                podlogs.of(self.store).add(
                    meta["namespace"], meta["name"], spec.get("name", ""), meta["uid"], buf
                )
            for port in ports:
                try:
                    await container.app.start(ip, port)
                except OSError as exc:
                    container.error = f"cannot listen on {ip}:{port}: {exc}"
                    log.error(
                        "pod %s: container %s: %s",
                        pod["metadata"]["name"],
                        spec.get("name"),
                        container.error,
                    )
                    break
            self._container_events(pod, container)
        return started

    def _container_events(self, pod: Obj, container: _Container) -> None:
        name, image = container.spec.get("name", ""), container.spec.get("image", "")

        def emit(kind: str, reason: str, message: str) -> None:
            events.record(
                self.store,
                pod,
                kind,
                reason,
                message,
                component=COMPONENT,
                host=self.settings.node_name,
            )

        emit(events.NORMAL, "Pulled", f'Container image "{image}" already present on machine')
        if container.error:
            emit(events.WARNING, "Failed", f"Error: {container.error}")
            return
        emit(events.NORMAL, "Created", f"Created container {name}")
        emit(events.NORMAL, "Started", f"Started container {name}")

    async def _probe(
        self, key: reconciling.Key, uid: str, containers: list[_Container], ip: str
    ) -> None:
        assert self._session is not None
        changed = False
        paused = self.switches.pod_unready(*key) if self.switches is not None else 0.0
        for container in containers:
            if paused > 0:
                ready, why = (
                    False,
                    f"readiness paused by the sandbox fault pod-unready ({paused:.0f}s left)",
                )
            elif container.error:
                ready, why = False, container.error
            elif container.target is None:
                ready, why = container.app.ready, "container is not ready"
            else:
                ready, why = await probes.check(
                    container.target,
                    ip,
                    session=self._session,
                    timeout=self.settings.probe_timeout_s,
                )
            first_probe, container.probed = not container.probed, True
            if not ready and (container.ready or first_probe):
                pod = self.store.get(registry.PODS, *key)
                events.record(
                    self.store,
                    pod,
                    events.WARNING,
                    "Unhealthy",
                    f"Readiness probe failed: {why}",
                    component=COMPONENT,
                    host=self.settings.node_name,
                )
            if ready != container.ready:
                changed = True
                container.ready = ready
        if changed:
            self._write(key, uid, containers, ip, first=False)

    def _write(
        self, key: reconciling.Key, uid: str, containers: list[_Container], ip: str, *, first: bool
    ) -> None:
        pod = self.store.get(registry.PODS, *key)
        if pod["metadata"]["uid"] != uid:
            raise kstore.NotFound(f"pod {key[1]} was replaced")
        status = copy.deepcopy(pod.get("status") or {})
        now = objects.rfc3339(objects.now())
        if first:
            status.update(
                phase="Pending" if any(c.error for c in containers) else "Running",
                hostIP=self.host_ip,
                hostIPs=[{"ip": self.host_ip}],
                podIP=ip,
                podIPs=[{"ip": ip}],
                startTime=status.get("startTime") or now,
            )
            objects.set_condition(status, "PodScheduled", "True", "", "", update_time=False)
            objects.set_condition(status, "Initialized", "True", "", "", update_time=False)
        status["containerStatuses"] = [self._container_status(c) for c in containers]
        unready = [c.spec.get("name", "") for c in containers if not c.ready]
        if unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            for ctype in ("ContainersReady", "Ready"):
                objects.set_condition(
                    status, ctype, "False", "ContainersNotReady", message, update_time=False
                )
        else:
            for ctype in ("ContainersReady", "Ready"):
                objects.set_condition(status, ctype, "True", "", "", update_time=False)
        for cond in status.get("conditions") or ():
            cond.setdefault("lastProbeTime", None)
            if cond.get("status") == "True":
                cond.pop("reason", None)
                cond.pop("message", None)
        order = {"Initialized": 0, "Ready": 1, "ContainersReady": 2, "PodScheduled": 3}
        status["conditions"] = sorted(
            status.get("conditions") or [], key=lambda c: order.get(c["type"], 9)
        )
        pod["status"] = status
        self.store.update(registry.PODS, pod, subresource="status")

    @staticmethod
    def _container_status(container: _Container) -> Obj:
        image = container.spec.get("image", "")
        out: Obj = {
            "name": container.spec.get("name", ""),
            "image": image,
            "imageID": f"{image.split('@')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
            "ready": container.ready,
            "restartCount": 0,
            "lastState": {},
        }
        if container.error:
            out["started"] = False
            out["state"] = {"waiting": {"reason": "RunContainerError", "message": container.error}}
        else:
            out["started"] = True
            out["containerID"] = container.container_id
            out["state"] = {"running": {"startedAt": container.started_at}}
        return out

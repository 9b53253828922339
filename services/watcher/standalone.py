"""What the watcher sees in standalone mode (APISIX without Kubernetes).

There are no Deployments to watch, so the watcher observes what stands in for them:

* **the canaries** — a watch of the ``sluice_canaries`` bucket (where ``sluice apply`` puts
  them). For each canary it keeps two workload observations, as for a Flagger target and its
  primary: ``<ns>.<name>`` (the canary upstream: the revision it runs, its nodes) and
  ``<ns>.<name>-primary`` (the stable upstream: its nodes). Upstreams are always ready: the
  instances behind them are the user's. A new canary, a changed spec and a deletion wake the
  analyzer (``revision_detected``);
* **rollouts** — nobody sees a new version deployed behind the canary upstream, so whoever
  deployed it says so with a ``RolloutRequest`` on ``sluice.rollout.<ns>.<name>`` (``sluice
  rollout start``, or the webhook-runner's ``POST /rollouts/<ns>/<name>``). One replica (queue
  group ``watcher``) records the revision, which publishes ``revision_detected``;
* **nodes** — an upstream given by id has its nodes read from the Admin API when the canary
  changes and every ``SLUICE_NODES_REFRESH_S``; the builtin checks tell the canary's requests
  by them (APISIX's ``node`` label);
* **files** — ``SLUICE_CANARIES_DIR``, when set: every ``*.yaml`` / ``*.yml`` / ``*.json`` file is
  applied at start and again when it changes (``libs.standalone.applying``; a file that does not
  validate is logged and skipped, the canary keeps its last good spec). A removed file deletes
  nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import pathlib
from typing import Any

from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, logs, messages
from libs.adapters import apisix_admin
from libs.model import documents, standalone
from libs.standalone import applying
from libs.standalone import store as canary_store
from services.watcher import observing

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".yaml", ".yml", ".json")
UPSTREAM_KIND = "ApisixUpstream"


def nodes_of(upstream: Any) -> list[str]:
    """``host:port`` of each node of an APISIX upstream value (hash or array form)."""
    nodes = upstream.get("nodes") if isinstance(upstream, dict) else None
    if isinstance(nodes, dict):
        return sorted(str(node) for node in nodes)
    if isinstance(nodes, list):
        return sorted(
            f"{n.get('host')}:{n.get('port')}"
            for n in nodes
            if isinstance(n, dict) and n.get("host")
        )
    return []


def upstream_observation(
    ref: messages.CanaryRef, name: str, revision: str, nodes: list[str]
) -> messages.WorkloadObservation:
    """An upstream as a workload: one ready replica (the instances are the user's)."""
    return messages.WorkloadObservation(
        namespace=ref.namespace,
        name=name,
        kind=UPSTREAM_KIND,
        revision=revision,
        generation=1,
        observed_generation=1,
        replicas=1,
        status_replicas=1,
        updated_replicas=1,
        ready_replicas=1,
        available_replicas=1,
        nodes=nodes,
    )


class StandaloneWatcher:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        canaries: KeyValue,
        workloads: KeyValue,
        templates_kv: KeyValue,
        admin: apisix_admin.AdminApi | None,
        *,
        canaries_dir: str = "",
        refresh_s: float = 30.0,
        files_poll_s: float = 5.0,
    ) -> None:
        self.rt = rt
        self.canaries = canaries
        self.templates_kv = templates_kv
        self.store = canary_store.CanaryStore(canaries, rt.settings.nats_request_timeout_s)
        self.observations = observing.Watcher(rt, workloads)
        self.admin = admin
        self.canaries_dir = pathlib.Path(canaries_dir) if canaries_dir else None
        self.refresh_s = refresh_s
        self.files_poll_s = files_poll_s
        # per canary: (generation, deleting) last acted on; a status write changes neither
        self._seen: dict[tuple[str, str], tuple[int, bool]] = {}
        self._files: dict[pathlib.Path, str] = {}  # file -> digest last applied

    # --- rollouts

    async def on_rollout(self, request: messages.RolloutRequest) -> messages.Reply:
        ref = request.canary
        who = f"{ref.name}.{ref.namespace}"
        revision = request.revision.strip()
        if not revision or len(revision) > 253:
            raise errors.InvalidInput(
                f"revision: expected 1 to 253 characters, got {request.revision!r}",
                path="revision",
            )
        observed = await self.store.get(ref.namespace, ref.name)
        if observed is None or observed.canary is None or observed.apisix is None:
            return self._answer(request, False, f"canary {who} not found")
        if observed.canary.metadata.deletion_timestamp:
            return self._answer(request, False, f"canary {who} is being deleted")
        current = await self._workload(ref, ref.name)
        if current is not None and current.revision == revision:
            return self._answer(
                request,
                False,
                f"{revision} is already the revision of {who}; `sluice retry {ref.name}` "
                "analyses it again",
            )
        nodes = await self._nodes(observed.apisix.canary)
        await self.observations.record(ref, upstream_observation(ref, ref.name, revision, nodes))
        log.info(
            "revision %s of %s deployed (by %s)",
            revision,
            who,
            request.by or "someone",
            extra={"canary": f"{ref.namespace}/{ref.name}"},
        )
        return self._answer(request, True, f"rolling out {revision} to {who}")

    def _answer(
        self, request: messages.RolloutRequest, accepted: bool, message: str
    ) -> messages.RolloutAnswer:
        return messages.RolloutAnswer(
            canary=request.canary, revision=request.revision, accepted=accepted, message=message
        )

    # --- canaries

    async def run(self) -> None:
        """Follow the canaries bucket (and the files, and the nodes) until the service stops."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._follow(), name="standalone:canaries")
            tg.create_task(self._refresh(), name="standalone:nodes")
            if self.canaries_dir is not None:
                tg.create_task(self._poll_files(), name="standalone:files")

    async def _follow(self) -> None:
        while not self.rt.stopping.is_set():
            try:
                watcher = await self.canaries.watch(">", include_history=False)
                try:
                    async for entry in watcher:
                        if entry is None:
                            continue  # the end of the initial values
                        await self._on_entry(entry.key, entry.value, entry.operation)
                finally:
                    await watcher.stop()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus went away: follow again from the current state
                log.warning("following the canaries stopped (%s); again in 1s", logs.clip(str(exc)))
                await asyncio.sleep(1.0)

    async def _on_entry(
        self, key: str, value: bytes | None, operation: str | None, *, refresh: bool = False
    ) -> None:
        namespace, _, name = key.partition(".")
        ref = messages.CanaryRef(namespace=namespace, name=name)
        if operation in ("DEL", "PURGE") or not value:
            self._seen.pop((namespace, name), None)
            await self._forget(ref)
            return
        try:
            observed = bus.decode(messages.CANARY_OBSERVATION_DECODER, value)
        except errors.InvalidInput as exc:
            log.warning("undecodable canary %s: %s", key, exc)
            return
        if observed.canary is None or observed.apisix is None:
            return  # a Kubernetes canary (the other mode): not this watcher's
        try:
            await self._observe(ref, observed, refresh=refresh)
        except errors.SluiceError as exc:
            log.warning("observing %s.%s failed: %s", name, namespace, exc)

    async def _observe(
        self, ref: messages.CanaryRef, observed: messages.CanaryObservation, *, refresh: bool
    ) -> None:
        """Record the canary's two upstreams; wake the analyzer when the spec changed or the
        canary is being deleted (``refresh``: only the nodes are read again)."""
        assert observed.canary is not None
        assert observed.apisix is not None
        deleting = bool(observed.canary.metadata.deletion_timestamp)
        seen = (observed.generation, deleting)
        if not refresh and self._seen.get((ref.namespace, ref.name)) == seen:
            return
        target = observed.apisix
        canary_nodes = await self._nodes(target.canary)
        current = await self._workload(ref, ref.name)
        revision = current.revision if current is not None else target.initial_revision
        await self.observations.record(
            ref, upstream_observation(ref, ref.name, revision, canary_nodes)
        )
        primary_nodes = await self._stable_nodes(target)
        await self.observations.record_quietly(
            upstream_observation(ref, f"{ref.name}-primary", "stable", primary_nodes)
        )
        if current is not None and not refresh:  # a new spec or a deletion: decide again
            await bus.publish_event(
                self.rt,
                messages.RevisionDetected(
                    canary=ref, message=f"canary {ref.name}.{ref.namespace} changed"
                ),
            )
        self._seen[(ref.namespace, ref.name)] = seen

    async def _forget(self, ref: messages.CanaryRef) -> None:
        for name in (ref.name, f"{ref.name}-primary"):
            try:
                await self.observations.forget(ref.namespace, name)
            except errors.SluiceError as exc:
                log.warning("forgetting %s.%s failed: %s", name, ref.namespace, exc)

    async def _workload(
        self, ref: messages.CanaryRef, name: str
    ) -> messages.WorkloadObservation | None:
        return await self.observations.get(messages.workload_key(ref.namespace, name))

    # --- nodes

    async def _nodes(self, upstream: standalone.UpstreamSpec) -> list[str]:
        if upstream.nodes is not None:
            return sorted(upstream.node_weights())
        if upstream.id is None or self.admin is None:
            return []
        try:
            found = await self.admin.get("upstreams", upstream.id)
        except errors.SluiceError as exc:
            log.warning("reading upstream %s: %s", upstream.id, exc)
            return []
        return nodes_of(found.value)

    async def _stable_nodes(self, target: standalone.ApisixTarget) -> list[str]:
        if target.stable is not None:
            return await self._nodes(target.stable)
        if self.admin is None:
            return []
        try:
            route = (await self.admin.get("routes", target.route_id)).value
        except errors.SluiceError as exc:
            log.warning("reading route %s: %s", target.route_id, exc)
            return []
        if isinstance(route.get("upstream_id"), str):
            return await self._nodes(standalone.UpstreamSpec(id=route["upstream_id"]))
        return nodes_of(route.get("upstream"))

    async def _refresh(self) -> None:
        """Upstreams given by id change their nodes outside Sluice: read them again now and
        then, so the checks keep telling the canary apart."""
        while not self.rt.stopping.is_set():
            await asyncio.sleep(self.refresh_s)
            try:
                keys = await self.canaries.keys()
            except Exception:
                continue
            for key in keys:
                namespace, _, name = key.partition(".")
                observed = await self.store.get(namespace, name)
                if observed is not None:
                    await self._on_entry(key, messages.ENCODER.encode(observed), None, refresh=True)

    # --- files

    async def _poll_files(self) -> None:
        assert self.canaries_dir is not None
        while not self.rt.stopping.is_set():
            try:
                await self.apply_files()
            except errors.SluiceError as exc:
                log.warning("applying %s: %s", self.canaries_dir, exc)
            await asyncio.sleep(self.files_poll_s)

    async def apply_files(self) -> None:
        """Apply every file of the canaries directory that changed since it was applied."""
        assert self.canaries_dir is not None
        paths = sorted(
            p
            for p in (self.canaries_dir.iterdir() if self.canaries_dir.is_dir() else ())
            if p.suffix in FILE_SUFFIXES and p.is_file()
        )
        for path in paths:
            text = path.read_text(encoding="utf-8", errors="replace")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if self._files.get(path) == digest:
                continue
            try:
                docs = documents.load_documents(text, str(path))
                applied = await applying.apply(
                    docs,
                    self.canaries,
                    self.templates_kv,
                    self.rt.settings.nats_request_timeout_s,
                )
            except errors.InvalidInput as exc:
                log.error("not applied, %s does not validate:\n%s", path, exc.message)
            else:
                for item in applied:
                    log.info("%s %s (from %s)", item.label, item.outcome, path.name)
            self._files[path] = digest

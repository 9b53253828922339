"""Where the analyzer reads and writes canary state in standalone mode (no Kubernetes).

The canary, spec and status, is its entry in the ``sluice_canaries`` KV bucket
(``libs.standalone.store``): reads are that entry, with its KV revision as the resource
version, and the status is written back with compare-and-set on that revision. Secrets named by
MetricTemplate providers are files, laid out as a mounted Kubernetes Secret:
``$SLUICE_SECRETS_DIR/<secret name>/<key>``.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Mapping

from libs import errors, messages
from libs.model import canary as canary_model
from libs.standalone import store as canary_store
from services.analyzer import state


class Observations(state.KvObservations):
    """The watcher's workload observations, and the canary straight from its KV entry."""

    def __init__(self, base: state.KvObservations, store: canary_store.CanaryStore) -> None:
        super().__init__(base.rt, base.canaries, base.workloads, base.templates_kv)
        self.store = store

    async def canary(self, namespace: str, name: str) -> messages.CanaryObservation | None:
        return await self.store.get(namespace, name)


class StatusWriter:
    """``status`` into the canary's KV entry, conditional on the revision it was read at."""

    def __init__(self, store: canary_store.CanaryStore) -> None:
        self.store = store

    async def write(
        self,
        canary: canary_model.Canary,
        resource_version: str,
        status: canary_model.CanaryStatus,
    ) -> None:
        ref = messages.CanaryRef(
            namespace=canary.metadata.namespace or "", name=canary.metadata.name or ""
        )
        await self.store.write_status(ref, resource_version, status)

    async def mark_invalid(
        self, ref: messages.CanaryRef, resource_version: str, message: str
    ) -> None:
        await self.store.mark_invalid(ref, resource_version, message)


class DirSecrets:
    """A provider's Secret from ``<directory>/<name>/<key>`` files (the namespace plays no
    part: one Sluice installation, one secrets directory)."""

    def __init__(self, directory: str) -> None:
        self.directory = pathlib.Path(directory) if directory else None

    async def __call__(self, namespace: str, name: str) -> Mapping[str, bytes | str]:
        return await asyncio.to_thread(self._read, name)

    def _read(self, name: str) -> dict[str, bytes | str]:
        if self.directory is None:
            raise errors.NotFound(
                f"secret {name}: no secrets directory is configured (SLUICE_SECRETS_DIR)"
            )
        folder = self.directory / name
        if "/" in name or name in ("", ".", "..") or not folder.is_dir():
            raise errors.NotFound(f"secret {name}: no directory {folder} (SLUICE_SECRETS_DIR)")
        out: dict[str, bytes | str] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                out[path.name] = path.read_bytes()
        return out

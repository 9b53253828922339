"""Checking a canary's metrics for one step: Flagger's order, Prometheus queries, first failure.

Builtin checks (``request-success-rate``, ``request-duration`` on APISIX) run first against the
canary's metrics server (``spec.metricsServer``, else ``SLUICE_PROMETHEUS_URL``), then the
MetricTemplate checks against each template's provider, as Flagger's ``runAnalysis`` does. The
first failed check ends the step with Flagger's halt message; every measured value becomes a
``metric_checked`` event (Flagger hides them; Sluice users asked to see them).

A dry-run metric (``sluice.dryRun``) is checked in its place but never ends the step: its event
carries ``dry_run`` and, on failure, what it would have halted. A relative check
(``sluice.compareTo: primary``) runs its query for the canary and for the primary at the same
time, so both cover the same window; its event carries both sides and their difference.

Templates come from the watcher's observations; a template provider's Secret is read from
Kubernetes only when a template names one, only by this service, and never leaves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from libs import errors, messages
from libs.adapters import prometheus
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from libs.model import extensions, templates
from services.analyzer import machine, metrics

log = logging.getLogger(__name__)

TemplateSource = Callable[[str, str], Awaitable[templates.MetricTemplate | None]]
SecretSource = Callable[[str, str], Awaitable[Mapping[str, bytes | str]]]

QUERIES_PER_CLIENT = 10  # the Prometheus client's connection pool (requests' default per host)
# Prometheus clients kept at once; the least recently used beyond this is closed (a deleted
# template's client, or a metrics server no canary names any more, would otherwise stay forever)
MAX_CLIENTS = 128


class Checker:
    def __init__(
        self,
        default_address: str,
        templates_source: TemplateSource,
        secrets: SecretSource | None,
        timeout_s: float = prometheus.DEFAULT_TIMEOUT_S,
    ) -> None:
        self.default_address = default_address
        self.templates = templates_source
        self.secrets = secrets
        self.timeout_s = timeout_s
        # key -> (credentials fingerprint, client), least recently used first
        self._clients: OrderedDict[str, tuple[str, prometheus.Prometheus]] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        # queries at once per client: no more than its connection pool keeps (more would open
        # and drop a connection each), and the rest of the worker threads stay free for the
        # status writes instead of queueing behind a slow Prometheus
        self._gates: weakref.WeakKeyDictionary[prometheus.Prometheus, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def close(self) -> None:
        clients = [client for _, client in self._clients.values()]
        self._clients.clear()
        for client in clients:
            await client.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def _cached(
        self, key: str, fingerprint: str, make: Callable[[], prometheus.Prometheus]
    ) -> prometheus.Prometheus:
        """The client for ``key``; a new fingerprint (rotated credentials) replaces the old one,
        and beyond ``MAX_CLIENTS`` the least recently used is closed."""
        found = self._clients.get(key)
        if found is not None and found[0] == fingerprint:
            self._clients.move_to_end(key)
            return found[1]
        if found is not None:
            self._retire(found[1])
        client = make()
        self._clients[key] = (fingerprint, client)
        while len(self._clients) > MAX_CLIENTS:
            _, (_, oldest) = self._clients.popitem(last=False)
            self._retire(oldest)
        return client

    def _retire(self, client: prometheus.Prometheus) -> None:
        # queries under way on it finish; its pooled connections are closed
        task = asyncio.get_running_loop().create_task(client.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def check(self, canary: canary_model.Canary) -> machine.MetricsOutcome:
        ordered = sorted(
            canary.get_analysis().metrics,
            key=lambda m: metrics.kind_of(m) != metrics.Kind.BUILTIN,
        )
        checked: list[messages.MetricChecked] = []
        for metric in ordered:
            result = await self._check_one(canary, metric)
            checked.append(_event(canary, result))
            if result.halts:
                return machine.MetricsOutcome(ok=False, halt=result.message, checked=tuple(checked))
        return machine.MetricsOutcome(ok=True, checked=tuple(checked))

    async def _check_one(
        self, canary: canary_model.Canary, metric: analysis_model.Metric
    ) -> metrics.Result:
        try:
            template = None
            key = metrics.template_key(canary, metric)
            if key is not None:
                template = await self.templates(*key)
            query = metrics.render(canary, metric, template)
            relative = extensions.compare_to(metric) is not None
            primary = metrics.render(canary, metric, template, primary=True) if relative else None
            client = await self._client(canary, template)
        except errors.SluiceError as exc:
            return metrics.check(canary, metric, exc)
        if primary is None:
            gate = self.gate(client)
            return metrics.check(canary, metric, await _value(client, query.promql, gate))
        canary_value, primary_value = await asyncio.gather(
            _value(client, query.promql, self.gate(client)),
            _value(client, primary.promql, self.gate(client)),
        )
        return metrics.check_relative(canary, metric, canary_value, primary_value)

    async def _client(
        self, canary: canary_model.Canary, template: templates.MetricTemplate | None
    ) -> prometheus.Prometheus:
        if template is None:
            address = canary.spec.metrics_server or self.default_address
            return self._cached(
                f"address {address}",
                "",
                lambda: prometheus.Prometheus(address, timeout_s=self.timeout_s),
            )
        provider = template.spec.provider
        if provider.type != "prometheus":
            raise errors.Unsupported(
                f"MetricTemplate {template.metadata.namespace}/{template.metadata.name}: provider "
                f"{provider.type} is not supported; Sluice queries prometheus"
            )
        credentials: Mapping[str, bytes | str] | None = None
        if provider.secret_ref is not None:
            if self.secrets is None:
                raise errors.Unsupported("a MetricTemplate secretRef needs Kubernetes")
            credentials = await self.secrets(
                template.metadata.namespace or "", provider.secret_ref.name
            )
        # one client per template and credentials: a rotated Secret gets a new one
        fingerprint = hashlib.sha256(repr(sorted((credentials or {}).items())).encode()).hexdigest()
        return self._cached(
            f"template {template.metadata.namespace}/{template.metadata.name}",
            fingerprint,
            lambda: prometheus.Prometheus.from_provider(
                provider, credentials, timeout_s=self.timeout_s
            ),
        )

    def gate(self, client: prometheus.Prometheus) -> asyncio.Semaphore:
        """The queries of ``client`` that may run at once (``QUERIES_PER_CLIENT``)."""
        gate = self._gates.get(client)
        if gate is None:
            gate = self._gates[client] = asyncio.Semaphore(QUERIES_PER_CLIENT)
        return gate


async def _value(
    client: prometheus.Prometheus, promql: str, gate: asyncio.Semaphore
) -> float | BaseException:
    """The query's value, or the Sluice error that took its place."""
    try:
        async with gate:
            return await client.query(promql)
    except errors.SluiceError as exc:
        return exc


def _event(canary: canary_model.Canary, result: metrics.Result) -> messages.MetricChecked:
    return messages.MetricChecked(
        canary=messages.CanaryRef(
            namespace=canary.metadata.namespace or "", name=canary.metadata.name or ""
        ),
        target=canary.spec.target_ref.name,
        severity=messages.Severity.INFO if result.passed else messages.Severity.WARN,
        metric=result.metric,
        value=result.value,
        min=result.min,
        max=result.max,
        passed=result.passed,
        message=result.message,
        dry_run=result.dry_run,
        canary_value=result.canary_value,
        primary_value=result.primary_value,
    )

"""Health checkers of the upstreams that have ``checks``, as APISIX runs them (lua-resty-healthcheck).

* One ``Checker`` per upstream with checks in the route table (``Checkers.update``): started
  when the upstream appears, stopped when it leaves, replaced (every node healthy again) when
  it changes. Its targets are the nodes, at ``active.port`` when set.
* A target is healthy or not, with counters (``Target``): a success clears the failure
  counters and, on an unhealthy target, counts towards ``healthy.successes``; a failure (HTTP,
  TCP or timeout, each its own counter) clears the success counter and, on a healthy target,
  counts towards its ``unhealthy`` threshold. Crossing one flips the state and clears the
  counters. A threshold of 0 ignores that kind of report. Active probes use the active
  thresholds, proxied traffic the passive ones.
* Active probes: ``http``/``https`` GET ``http_path`` with ``Host`` (``pass_host: rewrite``'s
  host, else ``active.host``, else the node) and ``req_headers``; a status in
  ``healthy.http_statuses`` is a success, one in ``unhealthy.http_statuses`` an HTTP failure,
  others count for nothing; a refused connection is a TCP failure, no answer within
  ``timeout`` a timeout. ``tcp`` only connects. Healthy nodes are probed every
  ``healthy.interval``, unhealthy ones every ``unhealthy.interval`` (0: not probed), at most
  ``concurrency`` at once.
* Passive: the status of every proxied response (when ``passive`` is configured) and, on a
  retry, the failed attempt's refused connection (always, with APISIX's default passive
  thresholds when ``passive`` is not configured).
* Node choice skips unhealthy nodes (``usable``); when none is healthy every node is used.
* ``statuses`` feeds ``apisix_upstream_status{name,ip,port}``: ``name`` is the upstream's
  etcd key, ``/apisix/upstreams/<id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

import aiohttp

from sandbox.gateway import checks as health_checks
from sandbox.gateway import translation, upstreams

logger = logging.getLogger(__name__)

Node = upstreams.Node
SUCCESS, HTTP, TCP, TIMEOUT = "success", "http", "tcp", "timeout"
UPSTREAM_KEY_PREFIX = "/apisix/upstreams/"


@dataclasses.dataclass
class Target:
    """One node's health and counters (pure)."""

    healthy: bool = True
    successes: int = 0
    failures: dict[str, int] = dataclasses.field(
        default_factory=lambda: {HTTP: 0, TCP: 0, TIMEOUT: 0}
    )

    def report(self, outcome: str, limit: int) -> bool:
        """Count one outcome against its threshold ``limit``; True when the state flipped."""
        if limit <= 0:
            return False
        if outcome == SUCCESS:
            self.failures = dict.fromkeys(self.failures, 0)
            if self.healthy:
                return False
            self.successes += 1
        else:
            self.successes = 0
            if not self.healthy:
                return False
            self.failures[outcome] += 1
        if (self.successes if outcome == SUCCESS else self.failures[outcome]) < limit:
            return False
        self.healthy = outcome == SUCCESS
        self.successes = 0
        self.failures = dict.fromkeys(self.failures, 0)
        return True


def limit(thresholds: health_checks.Active | health_checks.Passive, outcome: str) -> int:
    if outcome == SUCCESS:
        return thresholds.healthy.successes
    unhealthy = thresholds.unhealthy
    return {HTTP: unhealthy.http_failures, TCP: unhealthy.tcp_failures}.get(
        outcome, unhealthy.timeouts
    )


def classify(statuses: tuple[health_checks.Healthy, health_checks.Unhealthy], code: int) -> str:
    """A status code as a success, an HTTP failure, or nothing ("")."""
    healthy, unhealthy = statuses
    if code in healthy.http_statuses:
        return SUCCESS
    if code in unhealthy.http_statuses:
        return HTTP
    return ""


class Checker:
    """The checker of one upstream: its targets, the active probe loop, passive reports."""

    def __init__(
        self,
        upstream: upstreams.Upstream,
        checks: health_checks.Checks,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.upstream = upstream
        self.checks = checks
        self.name = UPSTREAM_KEY_PREFIX + upstream.id
        self._on_change = on_change
        self.targets: dict[tuple[str, int], Target] = {
            self.key(n): Target() for n in upstream.nodes
        }
        self._probed: dict[tuple[str, int], float] = {}

    def key(self, node: Node) -> tuple[str, int]:
        return (node.host, self.checks.active.port or node.port)

    def is_healthy(self, node: Node) -> bool:
        target = self.targets.get(self.key(node))
        return target is None or target.healthy

    def report(self, node: Node, outcome: str, active: bool) -> None:
        target = self.targets.get(self.key(node))
        if target is None or not outcome:
            return
        thresholds = self.checks.active if active else self.checks.passive_or_default
        if target.report(outcome, limit(thresholds, outcome)):
            logger.info(
                "upstream %s: node %s:%d is now %s",
                self.upstream.name,
                *self.key(node),
                "healthy" if target.healthy else "unhealthy",
            )
            self._on_change()

    def report_status(self, node: Node, code: int) -> None:
        """A proxied response (``passive`` configured only)."""
        passive = self.checks.passive
        if passive is not None:
            self.report(node, classify((passive.healthy, passive.unhealthy), code), active=False)

    def report_failure(self, node: Node, outcome: str) -> None:
        """A failed attempt the balancer retries (TCP failure or timeout)."""
        self.report(node, outcome, active=False)

    # -- active probes -------------------------------------------------------------------------

    def due(self, now: float) -> list[Node]:
        """The nodes whose state's interval has passed since their last probe."""
        active, out = self.checks.active, []
        for node in self.upstream.nodes:
            key = self.key(node)
            interval = (
                active.healthy.interval if self.is_healthy(node) else active.unhealthy.interval
            )
            if interval > 0 and now - self._probed.get(key, -interval) >= interval:
                out.append(node)
        return out

    async def run(
        self,
        session: aiohttp.ClientSession,
        dial: Callable[[Node], tuple[str, int] | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        active = self.checks.active
        intervals = [i for i in (active.healthy.interval, active.unhealthy.interval) if i > 0]
        if not intervals:
            return
        tick = min(intervals)
        limiter = asyncio.Semaphore(max(active.concurrency, 1))

        async def one(node: Node) -> None:
            async with limiter:
                self._probed[self.key(node)] = clock()
                try:
                    outcome = await self.probe(session, node, dial)
                except Exception:  # a probe must never end the checker
                    logger.exception("upstream %s: probe of %s failed", self.name, node.address)
                    return
                self.report(node, outcome, active=True)

        while True:
            due = self.due(clock())
            if due:
                async with asyncio.TaskGroup() as tg:
                    for node in due:
                        tg.create_task(one(node))
            # The probe schedule, not a wait for an event: APISIX's checker timer ticks too.
            await asyncio.sleep(tick / 4)

    async def probe(
        self,
        session: aiohttp.ClientSession,
        node: Node,
        dial: Callable[[Node], tuple[str, int] | None],
    ) -> str:
        """One probe of ``node``: SUCCESS, HTTP, TCP, TIMEOUT, or "" (a status of neither list)."""
        active = self.checks.active
        where = dial(node)
        if where is None:
            return TCP
        host, port = where[0], active.port or where[1]
        if active.type == "tcp":
            try:
                async with asyncio.timeout(active.timeout):
                    _reader, writer = await asyncio.open_connection(host, port)
            except TimeoutError:
                return TIMEOUT
            except OSError:
                return TCP
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return SUCCESS
        settings = self.upstream.settings
        headers = {"Host": settings.upstream_host if settings.pass_host == "rewrite" else ""}
        headers["Host"] = headers["Host"] or active.host or node.host
        for line in active.req_headers:
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip()] = value.strip()
        bracketed = f"[{host}]" if ":" in host else host
        url = f"{active.type}://{bracketed}:{port}{active.http_path}"
        try:
            async with session.get(
                url,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=active.timeout),
                ssl=active.https_verify_certificate if active.type == "https" else None,
            ) as resp:
                code = resp.status
        except TimeoutError:
            return TIMEOUT
        except (aiohttp.ClientError, OSError):
            return TCP
        return classify((active.healthy, active.unhealthy), code)


def in_table(table: translation.RouteTable) -> list[upstreams.Upstream]:
    """Every upstream the table's routes use (own, traffic-split, split rules)."""
    found: list[upstreams.Upstream] = []
    for route in table.routes:
        found += [route.upstream, *(w.upstream for w in route.weighted_upstreams)]
        found += [w.upstream for r in route.split_rules for w in r.weighted_upstreams]
    return found


class Checkers:
    """Every checker of the route table, owned by the data plane."""

    def __init__(
        self,
        dial: Callable[[Node], tuple[str, int] | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dial, self._clock = dial, clock
        self.checkers: dict[str, Checker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._wanted: dict[str, upstreams.Upstream] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._reconcile()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        pending = [*self._tasks.values(), *self._stopping]
        self._tasks.clear()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._stopping.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def update(self, table_upstreams: Iterable[upstreams.Upstream]) -> None:
        """Checkers for the upstreams with checks (``in_table``'s); the others are stopped."""
        self._wanted = {
            up.name: up for up in table_upstreams if up.settings.checks is not None and up.nodes
        }
        self._reconcile()

    def _reconcile(self) -> None:
        for name in list(self.checkers):
            wanted = self._wanted.get(name)
            if wanted is None or wanted != self.checkers[name].upstream:
                del self.checkers[name]
                task = self._tasks.pop(name, None)
                if task is not None:
                    task.cancel()
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)
        session = self._session
        for name, up in self._wanted.items():
            if name in self.checkers or up.settings.checks is None:
                continue
            checker = Checker(up, up.settings.checks, self._notify)
            self.checkers[name] = checker
            if session is not None:
                self._tasks[name] = asyncio.get_running_loop().create_task(
                    checker.run(session, self._dial, self._clock), name=f"health {name}"
                )
        self._notify()

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def get(self, upstream: upstreams.Upstream) -> Checker | None:
        checker = self.checkers.get(upstream.name)
        return checker if checker is not None and checker.upstream == upstream else None

    def usable(self, upstream: upstreams.Upstream) -> upstreams.Upstream:
        """The upstream with only its healthy nodes (all of them when none is healthy)."""
        checker = self.get(upstream)
        if checker is None:
            return upstream
        healthy = tuple(n for n in upstream.nodes if checker.is_healthy(n))
        if not healthy or len(healthy) == len(upstream.nodes):
            return upstream
        return dataclasses.replace(upstream, nodes=healthy)

    def statuses(self) -> Iterable[tuple[str, str, str, float]]:
        """(name, ip, port, 1 healthy / 0 not) per target, for ``apisix_upstream_status``."""
        for checker in list(self.checkers.values()):
            for (ip, port), target in checker.targets.items():
                yield checker.name, ip, str(port), 1.0 if target.healthy else 0.0

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Until ``predicate()`` holds after a health change (``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

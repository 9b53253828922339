"""How every Sluice service process starts, runs and stops.

``run(name, settings, setup)`` is all a service's ``__main__`` calls::

    start    logging → signal handlers → /healthz server → connect NATS (retrying) → setup(runtime)
             (setup declares streams and starts the service's root tasks) → /readyz turns 200
    run      until SIGTERM/SIGINT, or until a root task dies (then the exit code is 1)
    stop     /readyz 503 → root tasks stop fetching and finish in-flight work for at most
             ``shutdown_grace_s`` → NATS drained → HTTP server closed; a hard-exit timer of
             ``hard_exit_s`` ends the process if any of this hangs

NATS reconnects forever in the background; while it is away ``/readyz`` answers 503 and the
consumers wait instead of failing. If nats-py closes the connection for good (it does on any
protocol error the server sends, such as "maximum control line exceeded"), the service never
lingers as a live process that no longer works: ``/healthz`` turns 503 and the service stops
with exit code 1, so its process manager starts it afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats
import nats.errors
import uvloop
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs import bus, errors, health, logs, metrics, settings

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0  # closing a client that never connected


def version() -> str:
    try:
        return importlib.metadata.version("sluice")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclasses.dataclass
class Runtime:
    """What a service's setup and handlers get: the bus, metrics, and a way to add root tasks."""

    name: str
    settings: settings.ServiceSettings
    nc: Client
    js: JetStreamContext
    metrics: metrics.BusMetrics
    stopping: asyncio.Event
    _tg: asyncio.TaskGroup
    _roots: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    _closers: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)
    health: health.HealthState = dataclasses.field(default_factory=health.HealthState)

    def spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        """Start a long-lived root task; if it raises, the service stops with exit code 1."""
        self._roots.append(self._tg.create_task(coro, name=f"{self.name}:{name}"))

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Register a cleanup (close a client) run after the root tasks ended."""
        self._closers.append(closer)

    def add_readiness_check(self, check: Callable[[], str | None]) -> None:
        """``/readyz`` is 503 with the returned reason while ``check()`` is not None."""
        self.health.checks.append(check)


Setup = Callable[[Runtime], Coroutine[Any, Any, None]]


class Stopped(Exception):
    """Asked to stop before start-up finished; not a failure."""


async def connect_nats(
    cfg: settings.ServiceSettings,
    name: str,
    state: health.HealthState,
    bus_metrics: metrics.BusMetrics,
    stop: asyncio.Event,
    lost: asyncio.Event | None = None,
) -> Client:
    """Connect, retrying (also the first connection) until it works or the service must stop.

    ``lost`` is set when the client closes the connection for good while the service is not
    stopping (it then no longer reconnects)."""
    nc = Client()
    last_warning = 0.0

    async def closed() -> None:
        if not stop.is_set() and state.started and lost is not None:
            log.error(
                "the NATS connection was closed and will not reconnect (last error: %s)",
                logs.clip(str(nc.last_error or "none")),
            )
            lost.set()

    async def disconnected() -> None:
        if not (stop.is_set() or nc.is_closed or nc.is_draining):
            log.warning("disconnected from NATS; reconnecting")

    async def reconnected() -> None:
        bus_metrics.nats_reconnects.inc()
        log.info("reconnected to NATS at %s", logs.redact_url(cfg.nats_url))

    async def error(exc: Exception) -> None:
        nonlocal last_warning
        now = asyncio.get_running_loop().time()
        if now - last_warning >= 10.0:  # one line per 10s while NATS stays away
            last_warning = now
            log.warning("NATS at %s: %s", logs.redact_url(cfg.nats_url), bus.connect_failure(exc))

    state.nats_connected = lambda: nc.is_connected
    state.nats_closed = lambda: nc.is_closed
    credentials_and_tls = bus.connect_options(cfg)  # an unreadable file fails start-up here
    connecting = asyncio.ensure_future(
        nc.connect(
            servers=[cfg.nats_url],
            **credentials_and_tls,
            name=f"sluice-{name}",
            # nats-py annotates these as int but sleeps and waits on them as float seconds
            connect_timeout=cfg.nats_connect_timeout_s,  # type: ignore[arg-type]
            reconnect_time_wait=cfg.nats_reconnect_wait_s,  # type: ignore[arg-type]
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            closed_cb=closed,
            error_cb=error,
            drain_timeout=int(max(1, cfg.shutdown_grace_s)),
        )
    )
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({connecting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not connecting.done():
        connecting.cancel()
        # nats-py may take its time to unwind a half-open connection; never wait long for it
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(connecting, timeout=CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout=CLOSE_TIMEOUT_S)
        raise Stopped(f"stopped before NATS at {logs.redact_url(cfg.nats_url)} was reachable")
    try:
        connecting.result()
    except (TimeoutError, nats.errors.NoServersError, OSError) as exc:
        raise errors.Unavailable(
            f"NATS at {logs.redact_url(cfg.nats_url)} is not reachable: {exc}"
        ) from exc
    log.info("connected to NATS at %s", logs.redact_url(cfg.nats_url))
    return nc


def _arm_hard_exit(seconds: float) -> threading.Timer:
    def hard_exit() -> None:
        log.error("shutdown took longer than %.1fs; exiting hard", seconds)
        logging.shutdown()
        os._exit(2)

    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True
    timer.start()
    return timer


async def serve(name: str, cfg: settings.ServiceSettings, setup: Setup) -> int:
    """Run one service until it is told to stop; return the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    timer: threading.Timer | None = None

    def begin_stop() -> None:
        # the hard-exit timer starts with the request to stop, whatever phase the service is in
        nonlocal timer
        stop.set()
        if timer is None:
            timer = _arm_hard_exit(cfg.hard_exit_s)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, begin_stop)

    bus_metrics = metrics.create(name, version())
    state = health.HealthState()
    http = health.HealthServer(state, bus_metrics)
    await http.start(cfg.health_host, cfg.health_port)
    exit_code = 0
    nc: Client | None = None
    runtime: Runtime | None = None
    lost = asyncio.Event()
    try:
        nc = await connect_nats(cfg, name, state, bus_metrics, stop, lost)
        stopping = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            runtime = Runtime(
                name=name,
                settings=cfg,
                nc=nc,
                js=nc.jetstream(timeout=cfg.nats_request_timeout_s),
                metrics=bus_metrics,
                stopping=stopping,
                _tg=tg,
                health=state,
            )
            stopped = tg.create_task(stop.wait(), name=f"{name}:signals")
            lost_bus = tg.create_task(lost.wait(), name=f"{name}:nats-closed")
            starting = tg.create_task(setup(runtime), name=f"{name}:setup")
            await asyncio.wait({stopped, starting}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed setup fails the service
                state.started = True
                log.info("%s %s ready", name, version())
                roots = set(runtime._roots)
                # wake up when told to stop, or when any root task ends or the bus is gone for
                # good (both failures: the process manager restarts the service)
                await asyncio.wait({stopped, lost_bus, *roots}, return_when=asyncio.FIRST_COMPLETED)
                if lost.is_set():
                    log.error("stopping: without NATS this service cannot work")
                    exit_code = 1
                elif not stop.is_set():
                    log.error("a root task ended unexpectedly; stopping")
                    exit_code = 1
            else:
                log.info("stopped during start-up")
                starting.cancel()
                roots = set(runtime._roots)
            begin_stop()
            log.info("stopping: finishing in-flight work (grace %.1fs)", cfg.shutdown_grace_s)
            state.stopping = True
            stopping.set()
            stopped.cancel()
            lost_bus.cancel()
            _done, pending = (
                await asyncio.wait(roots, timeout=cfg.shutdown_grace_s) if roots else (set(), set())
            )
            for task in pending:
                log.warning(
                    "task %s did not finish within the grace period; cancelling", task.get_name()
                )
                task.cancel()
    except* Stopped as stopped_early:
        log.info("%s", stopped_early.exceptions[0])
    except* errors.Unavailable as unavailable:
        for reason in unavailable.exceptions:
            log.error("%s", reason)
        exit_code = 1
    except* Exception as failures:
        for failure in failures.exceptions:
            log.error("service failed: %s", failure, exc_info=failure)
        exit_code = 1
    finally:
        begin_stop()  # cleanup below is bounded by the hard-exit timer too
        state.stopping = True
        if runtime is not None:
            for closer in reversed(runtime._closers):
                try:
                    await closer()
                except Exception as exc:
                    log.warning("cleanup failed: %s", exc)
        if nc is not None and not nc.is_closed:
            try:
                # drain has its own drain_timeout; the outer bound covers close() as well
                closing = nc.drain() if nc.is_connected else nc.close()
                await asyncio.wait_for(closing, timeout=cfg.shutdown_grace_s + CLOSE_TIMEOUT_S)
            except Exception as exc:  # the bus may be gone; closing is best effort
                log.warning("closing NATS connection failed: %s", exc)
        await http.stop()
        if timer is not None:
            timer.cancel()
    log.info("%s stopped (exit code %d)", name, exit_code)
    return exit_code


def main(
    name: str,
    settings_cls: type[settings.S],
    setup: Callable[[Runtime, settings.S], Awaitable[None]],
) -> None:
    """The whole of a service's ``__main__``: settings → logging → uvloop → serve → exit code."""
    try:
        cfg = settings.from_env(settings_cls)
    except errors.InvalidInput as exc:
        logs.setup(name)
        log.error("invalid settings: %s", exc)
        raise SystemExit(2) from None
    logs.setup(name, cfg.log_level, cfg.log_format)

    async def bound_setup(runtime: Runtime) -> None:
        await setup(runtime, cfg)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(serve(name, cfg, bound_setup))
    raise SystemExit(code)

"""Sluice's own load generator: runs parsed ``hey`` options with aiohttp, never a shell or hey.

``run`` opens one ``aiohttp.ClientSession`` for the run and starts ``-c`` workers. Each worker
sends one request at a time, reads and discards the body, and records the outcome:

- ``-n``: each worker sends ``n // c`` requests (hey leaves the remainder unsent);
- ``-z``: workers send until the duration ends, then start no new request; requests under way
  finish (or time out with ``-t``), as in hey;
- ``-q``: each worker follows its own schedule, request ``k`` due at ``start + k / q``; due
  times come from the start, so sleeping never drifts. A worker that falls more than one slot
  behind (slow responses) skips the slots it missed instead of bursting to catch up, like Go's
  ticker in hey. So ``-z 10s -q 10 -c 2`` sends 200 requests;
- ``stop`` (the service shutting down) cancels the workers and the requests under way at once;
  the report says ``stopped`` and holds what ended before.

Requests are built once: headers (``Options.request_headers``), body, timeout (``-t``, for the
whole exchange, redirects and body included), redirects (``-disable-redirects``; at most 10
are followed, as Go does), keep-alive (``-disable-keepalive``: a new connection per request),
compression (``-disable-compression``: no ``Accept-Encoding``, nothing decompressed; otherwise
``Accept-Encoding: gzip`` as Go sends it). Proxies come from ``HTTP_PROXY`` / ``HTTPS_PROXY`` /
``NO_PROXY`` (decided once per run, see ``env_proxy``), and ``-x`` overrides them. TLS certificates are not verified, as
hey does not verify them (``InsecureSkipVerify``); ``-host`` is the TLS server name too.

Failed requests are counted by message in Go's words, so the error distribution reads like
hey's: ``Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused``.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import pathlib
import time
import types
import urllib.request
from collections.abc import Callable

import aiohttp
import prometheus_client as prom
import yarl

from libs import errors, logs
from services.webhook_runner.hey import parsing, recording, summary

DATA_DIR_VARIABLE = "SLUICE_LOADTESTER_DATA_DIR"
DISABLED_BODY_FILE = f"hey -D is disabled: set {DATA_DIR_VARIABLE} to a directory of request bodies"
MAX_REDIRECTS = 10  # Go's http.Client follows at most 10


class BodyFileError(errors.PermanentError):
    """``-D`` cannot be used: disabled, outside the data directory, or unreadable."""


async def run(
    options: parsing.Options,
    *,
    stop: asyncio.Event | None = None,
    metrics: recording.Metrics | None = None,
    data_dir: pathlib.Path | None = None,
    output: Callable[[str], None] | None = None,
    canary: str = "",
    max_samples: int = recording.MAX_SAMPLES,
) -> recording.Report:
    """Run the load test ``options`` describes and report what happened.

    ``stop``: set it to end the run early (requests under way are abandoned).
    ``metrics``: where to count requests and runs, labelled ``canary``.
    ``data_dir``: the only directory ``-D`` may read from; None refuses ``-D``.
    ``output``: receives the CSV lines (header first, no newline) when ``-o csv``.
    Raises ``BodyFileError`` when ``-D`` cannot be read; request failures never raise.
    """
    labels = _Labels(metrics, canary)
    labels.running.inc()
    result = "failed"
    try:
        body = await read_body(options, data_dir) if options.body_file else options.body
        report = await _Run(options, body, labels, output, max_samples).execute(stop)
        result = "stopped" if report.stopped else "completed"
        return report
    except asyncio.CancelledError:
        result = "cancelled"
        raise
    finally:
        labels.running.dec()
        labels.runs(result).inc()


async def read_body(options: parsing.Options, data_dir: pathlib.Path | None) -> bytes:
    """The ``-D`` file, which must resolve (symbolic links followed) inside ``data_dir``."""
    name = options.body_file
    if data_dir is None:
        raise BodyFileError(DISABLED_BODY_FILE)

    def read() -> bytes:
        try:
            base = data_dir.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # missing, or a symbolic link loop
            raise BodyFileError(f"hey -D: cannot use {DATA_DIR_VARIABLE}: {_reason(exc)}") from None
        try:
            path = (base / name).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a loop, a NUL byte
            raise BodyFileError(f"hey -D: cannot use {_quoted(name)}: {_reason(exc)}") from None
        if not path.is_relative_to(base):
            raise BodyFileError(
                f"hey -D: {_quoted(name)} is outside {DATA_DIR_VARIABLE}; "
                "name a file in that directory"
            )
        if not path.is_file():
            raise BodyFileError(f"hey -D: {_quoted(name)} is not a file in {DATA_DIR_VARIABLE}")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise BodyFileError(f"hey -D: cannot read {_quoted(name)}: {_reason(exc)}") from None

    return await asyncio.to_thread(read)


# ----------------------------------------------------------------------------- the run


class _Labels:
    """The metric children of one canary, resolved once (labels() is not free)."""

    def __init__(self, metrics: recording.Metrics | None, canary: str) -> None:
        self._metrics = metrics
        self._canary = canary
        self._codes: dict[int, prom.Counter] = {}
        if metrics is None:
            self.running: prom.Gauge | _NoMetric = _NO_METRIC
            self.duration: prom.Histogram | _NoMetric = _NO_METRIC
            self.error: prom.Counter | _NoMetric = _NO_METRIC
        else:
            self.running = metrics.running.labels(canary)
            self.duration = metrics.duration.labels(canary)
            self.error = metrics.requests.labels(canary, "error")

    def code(self, status: int) -> prom.Counter | _NoMetric:
        if self._metrics is None:
            return _NO_METRIC
        child = self._codes.get(status)
        if child is None:
            child = self._codes[status] = self._metrics.requests.labels(self._canary, str(status))
        return child

    def runs(self, result: str) -> prom.Counter | _NoMetric:
        if self._metrics is None:
            return _NO_METRIC
        return self._metrics.runs.labels(self._canary, result)


class _NoMetric:
    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_NO_METRIC = _NoMetric()


class _Timing:
    """One worker's per-request connection timings, filled by the trace callbacks (reused)."""

    __slots__ = ("dial", "dial_started", "dns", "dns_started")

    def __init__(self) -> None:
        self.dial = self.dns = self.dial_started = self.dns_started = 0.0


async def _dial_started(_s: aiohttp.ClientSession, ctx: types.SimpleNamespace, _p: object) -> None:
    ctx.trace_request_ctx.dial_started = time.perf_counter()


async def _dial_ended(_s: aiohttp.ClientSession, ctx: types.SimpleNamespace, _p: object) -> None:
    timing = ctx.trace_request_ctx
    timing.dial += time.perf_counter() - timing.dial_started


async def _dns_started(_s: aiohttp.ClientSession, ctx: types.SimpleNamespace, _p: object) -> None:
    ctx.trace_request_ctx.dns_started = time.perf_counter()


async def _dns_ended(_s: aiohttp.ClientSession, ctx: types.SimpleNamespace, _p: object) -> None:
    timing = ctx.trace_request_ctx
    timing.dns += time.perf_counter() - timing.dns_started


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_connection_create_start.append(_dial_started)
    config.on_connection_create_end.append(_dial_ended)
    config.on_dns_resolvehost_start.append(_dns_started)
    config.on_dns_resolvehost_end.append(_dns_ended)
    return config


class _Run:
    def __init__(
        self,
        options: parsing.Options,
        body: bytes,
        labels: _Labels,
        output: Callable[[str], None] | None,
        max_samples: int,
    ) -> None:
        self.options = options
        self.body = body or None
        self.labels = labels
        self.output = output if options.output == "csv" else None
        self.recorder = recording.Recorder(max_samples)
        self.interval = 1.0 / options.qps if options.qps > 0 else 0.0
        self.start = 0.0  # loop time
        self.started = 0.0  # perf_counter
        self.deadline = math.inf  # loop time after which no request starts (-z)
        # what each failure is called in the error distribution ("Get", as Go's url.Error)
        self.op = options.method[:1] + options.method[1:].lower()
        self.shown_url = str(yarl.URL(options.url).with_user(None))  # no credentials in texts
        self.remaining = 0  # workers still running
        self.finished = asyncio.Event()  # every worker ended (or one broke)
        self.failure: Exception | None = None

    def _session(self) -> aiohttp.ClientSession:
        options = self.options
        headers = dict(options.request_headers())
        user_compression = any(k.lower() == "accept-encoding" for k in headers)
        skip = {"Accept"}  # Go sends no Accept unless asked (-A or -H)
        if options.disable_compression:
            skip.add("Accept-Encoding")
        elif not user_compression:
            headers["Accept-Encoding"] = "gzip"
        connector = aiohttp.TCPConnector(
            limit=0,  # one request per worker at a time: at most -c connections
            force_close=options.disable_keepalive,
            ssl=False,
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            skip_auto_headers=skip,
            # Go decompresses only what it asked to be compressed
            auto_decompress=not options.disable_compression and not user_compression,
            timeout=aiohttp.ClientTimeout(total=options.timeout_s or None),
            proxy=options.proxy or env_proxy(options.url),
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=[_trace_config()],
        )

    async def execute(self, stop: asyncio.Event | None) -> recording.Report:
        options = self.options
        loop = asyncio.get_running_loop()
        if self.output is not None:
            self.output(summary.CSV_HEADER)
        async with self._session() as session:
            self.start = loop.time()
            self.started = time.perf_counter()
            if options.duration_s > 0:
                self.deadline = self.start + options.duration_s
            count = options.requests_per_worker
            self.remaining = options.concurrency
            workers = [
                asyncio.create_task(self._work(session, count), name=f"hey-worker-{i}")
                for i in range(options.concurrency)
            ]
            stopped = await self._wait(workers, stop)
            total = time.perf_counter() - self.started
        return self.recorder.report(total, stopped=stopped, notes=options.notes)

    async def _wait(self, workers: list[asyncio.Task[None]], stop: asyncio.Event | None) -> bool:
        """Wait for the workers; True when ``stop`` ended them first. Whatever happens (the
        caller cancelled, a worker broke), no worker outlives this call."""
        waits = [asyncio.ensure_future(self.finished.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            stopped = not self.finished.is_set()  # before cancelled workers finish too
        finally:
            for task in (*workers, *waits):
                task.cancel()
            # the cancelled requests release their connections before the session closes
            await asyncio.wait((*workers, *waits))
        if self.failure is not None:
            raise self.failure
        return stopped

    async def _work(self, session: aiohttp.ClientSession, count: int | None) -> None:
        try:
            await self._worker(session, count)
        except Exception as exc:  # a bug, not a failed request: end the run with it
            self.failure = exc
            self.finished.set()
        finally:
            self.remaining -= 1
            if self.remaining == 0:
                self.finished.set()

    async def _worker(self, session: aiohttp.ClientSession, count: int | None) -> None:
        loop = asyncio.get_running_loop()
        interval, start, deadline = self.interval, self.start, self.deadline
        timing = _Timing()
        slot = 0
        sent = 0
        while count is None or sent < count:
            if interval:
                due = start + slot * interval
                now = loop.time()
                if now - due > interval:  # more than a slot behind: skip what was missed
                    slot = int((now - start) / interval)
                    due = start + slot * interval
                if due >= deadline:  # -z: no slot left; the run lasts its whole duration
                    if deadline > now:
                        await asyncio.sleep(deadline - now)
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                slot += 1
            elif loop.time() >= deadline:
                return
            await self._send(session, timing)
            sent += 1

    async def _send(self, session: aiohttp.ClientSession, timing: _Timing) -> None:
        options = self.options
        timing.dial = timing.dns = 0.0
        headers_at = 0.0
        started = time.perf_counter()
        try:
            async with session.request(
                options.method,
                options.url,
                data=self.body,
                allow_redirects=not options.disable_redirects,
                max_redirects=MAX_REDIRECTS,
                server_hostname=options.host or None,
                trace_request_ctx=timing,
            ) as response:
                headers_at = time.perf_counter()
                size = 0
                content = response.content
                while chunk := await content.readany():
                    size += len(chunk)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.recorder.error(self._describe(exc, headers_at > 0))
            self.labels.error.inc()
            return
        ended = time.perf_counter()
        latency = ended - started
        dial = timing.dial
        wait = headers_at - started - dial
        read = ended - headers_at
        self.recorder.response(latency, dial, timing.dns, wait, read, status, size)
        self.labels.code(status).inc()
        self.labels.duration.observe(latency)
        if self.output is not None:
            offset = started - self.started
            self.output(summary.csv_line(latency, dial, timing.dns, wait, read, status, offset))

    def _describe(self, exc: BaseException, got_headers: bool) -> str:
        """A failed request in the words of Go's net/http, which hey prints."""
        prefix = f'{self.op} "{self.shown_url}": '
        if isinstance(exc, TimeoutError):
            if got_headers:
                return prefix + (
                    "context deadline exceeded (Client.Timeout or context cancellation "
                    "while reading body)"
                )
            return (
                prefix
                + "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )
        if isinstance(exc, aiohttp.TooManyRedirects):
            return prefix + f"stopped after {MAX_REDIRECTS} redirects"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return prefix + f"dial tcp: lookup {exc.host}: no such host"
        if isinstance(exc, aiohttp.ClientConnectorError):
            dial = f"dial tcp {_host_port(exc.host, exc.port)}: connect: {_reason(exc.os_error)}"
            if isinstance(exc, aiohttp.ClientProxyConnectionError):
                return prefix + "proxyconnect tcp: " + dial
            return prefix + dial
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return prefix + "EOF"
        if isinstance(exc, OSError) and exc.errno:
            return prefix + _reason(exc)
        return prefix + logs.clip(str(exc) or type(exc).__name__, 200)


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (either case) choose for
    ``url``, as aiohttp's ``trust_env`` would choose it.

    Decided once per run rather than by ``trust_env=True``, which asks a thread for the proxy
    and another for ``~/.netrc`` credentials on every request (two thread hops per request, a
    third of the capacity) and would send netrc credentials to whatever host a command names.
    """
    parsed = yarl.URL(url)
    if not parsed.host or urllib.request.proxy_bypass(parsed.host):
        return None
    return urllib.request.getproxies().get(parsed.scheme) or None


def _host_port(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host


def _reason(exc: BaseException) -> str:
    """An OS error as Go words it: its errno's text in lower case ("connection refused")."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code:
        return os.strerror(code).lower() if code != errno.ETIMEDOUT else "i/o timeout"
    return logs.clip(str(exc) or type(exc).__name__, 200)


def _quoted(name: str) -> str:
    return '"' + logs.clip(name, 100).replace('"', '\\"') + '"'

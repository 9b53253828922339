"""Readiness checks of the sandbox stack's processes: small, cheap, bounded, never raising.

A check is any ``() -> bool``; ``str(check)`` says what it checks, for error messages. The
HTTP check never uses a proxy from the environment (a shell that sourced an old env file may
still point ``HTTP_PROXY`` at a name proxy that is gone) unless it is given one.
"""

from __future__ import annotations

import dataclasses
import socket
import urllib.error
import urllib.request
from typing import Protocol

from sandbox import prometheus

HOST = "127.0.0.1"
PROBE_TIMEOUT = 1.0  # seconds one readiness probe may take

# urllib without any proxy from the environment.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Check(Protocol):
    """A readiness probe: cheap, bounded by ``PROBE_TIMEOUT``, never raises."""

    def __call__(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class PortGreets:
    """The TCP port accepts a connection and the server speaks first with ``prefix``."""

    port: int
    prefix: bytes = b""
    host: str = HOST

    def __call__(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=PROBE_TIMEOUT) as sock:
                if not self.prefix:
                    return True
                sock.settimeout(PROBE_TIMEOUT)
                return sock.recv(len(self.prefix)) == self.prefix
        except OSError:
            return False

    def __str__(self) -> str:
        return f"{self.host}:{self.port} accepts" + (
            f" and sends {self.prefix!r}" if self.prefix else ""
        )


@dataclasses.dataclass(frozen=True)
class HttpAnswers:
    """GET ``url`` (directly, never through a proxy) answers one of ``statuses``."""

    url: str
    statuses: tuple[int, ...] = (200,)
    proxy: str = ""  # when set: send the request through this HTTP proxy instead
    header_absent: str = ""  # and the answer must not carry this header

    def __call__(self) -> bool:
        opener = (
            urllib.request.build_opener(urllib.request.ProxyHandler({"http": self.proxy}))
            if self.proxy
            else DIRECT
        )
        try:
            with opener.open(self.url, timeout=PROBE_TIMEOUT) as resp:
                status, headers = resp.status, resp.headers
        except urllib.error.HTTPError as e:
            status, headers = e.code, e.headers
            e.close()
        except (urllib.error.URLError, OSError):
            return False
        return status in self.statuses and not (
            self.header_absent and headers.get(self.header_absent) is not None
        )

    def __str__(self) -> str:
        via = f" via {self.proxy}" if self.proxy else ""
        return f"GET {self.url}{via} answers {'/'.join(map(str, self.statuses))}"


@dataclasses.dataclass(frozen=True)
class PrometheusSees:
    """Prometheus at ``url`` answers ``promql`` with ``value`` (e.g. ``up{job="x"}`` is 1: a
    scrape of the target has succeeded; Prometheus activates static targets only on its
    discovery manager's first update, up to 5 s after it is ready)."""

    url: str
    promql: str
    value: float = 1.0

    def __call__(self) -> bool:
        try:
            return prometheus.query(self.url, self.promql, timeout=PROBE_TIMEOUT) == self.value
        except prometheus.PrometheusError:
            return False

    def __str__(self) -> str:
        return f"{self.promql} is {self.value:g} in {self.url}"

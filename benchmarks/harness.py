"""What every figure of ``python -m benchmarks`` shares: the ``Figure`` record, percentiles,
CPU / RSS sampling from ``/proc``, a real nats-server and Sluice services as processes, and the
table / JSON output.

A figure module exposes ``run(args) -> list[Figure]``; ``args`` is the ``argparse.Namespace``
of ``python -m benchmarks`` (``args.quick``: a short smoke run). Processes are started with the
helpers of ``tests/fixtures`` (the same ones the integration tests use), wrapped so that a
failure is a ``BenchmarkError`` and every process is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from tests.fixtures import nats as nats_fixture
from tests.fixtures import services as services_fixture

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SERVICES = services_fixture.SERVICES
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchmarkError(Exception):
    """A benchmark could not measure what it measures (a process did not start, ...)."""


@dataclasses.dataclass
class Figure:
    """One row of the table. ``value`` is the headline, ``data`` the raw numbers."""

    key: str
    title: str
    value: str
    target: str
    met: bool | None
    conditions: str
    stand_ins: list[str] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- statistics


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, linearly interpolated between the two
    nearest ranks (numpy's default)."""
    if not ordered:
        raise ValueError("percentile of no values: expected at least one value")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q: expected 0 <= q <= 100, got {q}")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, min, p50, p90, p99, max and mean of ``values`` (in their unit)."""
    if not values:
        raise ValueError("summary of no values: expected at least one value")
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "min": ordered[0],
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def ms(stats: dict[str, float], scale: float = 1000.0) -> str:
    """``"p50 210 ms · p99 480 ms"`` from a ``summary`` of seconds."""
    return f"p50 {_num(stats['p50'] * scale)} ms · p99 {_num(stats['p99'] * scale)} ms"


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


# ----------------------------------------------------------------------------- /proc sampling


@dataclasses.dataclass(frozen=True)
class Sample:
    cpu_s: float  # user + system seconds, the process and its live children
    rss_bytes: int

    @property
    def rss_mb(self) -> float:
        return self.rss_bytes / 1e6


class ProcessStats:
    """CPU seconds and RSS of ``pid`` (and, with ``children``, its descendants) from /proc."""

    def __init__(self, pid: int, children: bool = True) -> None:
        self.pid = pid
        self.children = children

    def pids(self) -> list[int]:
        if not self.children:
            return [self.pid]
        parents: dict[int, list[int]] = {}
        for entry in pathlib.Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None:
                    parents.setdefault(int(stat[1]), []).append(int(entry.name))
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += parents.get(pid, [])
        return found

    def sample(self) -> Sample:
        cpu, rss = 0.0, 0
        for pid in self.pids():
            stat = _stat(pid)
            if stat is None:
                if pid == self.pid:
                    raise BenchmarkError(f"process {pid} is gone")
                continue
            # fields after "(comm)": state=0, ppid=1, ..., utime=11, stime=12, rss=21 (pages)
            cpu += (int(stat[11]) + int(stat[12])) / _CLK_TCK
            rss += int(stat[21]) * _PAGE
        return Sample(cpu, rss)


def _stat(pid: int) -> list[str] | None:
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


# ----------------------------------------------------------------------------- processes


def nats_version() -> str:
    binary = nats_fixture.nats_server_binary()
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    return done.stdout.strip().removeprefix("nats-server: ") or "unknown"


def machine() -> str:
    """``"2 cores · Python 3.11.9 · nats-server v2.10.x"``: every figure's base conditions."""
    return f"{os.cpu_count()} cores · Python {platform.python_version()} · nats-server {nats_version()}"


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix=f"sluice-bench-{prefix}-") as path:
        yield pathlib.Path(path)


@contextlib.contextmanager
def nats_server(store: pathlib.Path) -> Iterator[nats_fixture.NatsServer]:
    """A nats-server with JetStream on a free port of 127.0.0.1, its store in ``store``."""
    server = nats_fixture.NatsServer(store)
    try:
        server.start()
    except BaseException as exc:  # pytest.fail raises an Outcome (a BaseException)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise BenchmarkError(f"nats-server did not start: {exc}") from None
    try:
        yield server
    finally:
        server.stop()


class Services:
    """Sluice services as processes (``python -m services.<name>``), logs in ``log_dir``."""

    def __init__(self, log_dir: pathlib.Path) -> None:
        self.log_dir = log_dir
        self.started: list[services_fixture.ServiceProcess] = []

    def start(self, module: str, nats_url: str, **env: str) -> services_fixture.ServiceProcess:
        if module not in SERVICES:
            raise BenchmarkError(f"service: expected one of {', '.join(SERVICES)}, got {module!r}")
        process = services_fixture.ServiceProcess(
            module,
            {"SLUICE_NATS_URL": nats_url, "SLUICE_NATS_RECONNECT_WAIT_S": "0.2", **env},
            self.log_dir / f"{module}-{len(self.started)}.log",
        )
        process.start()
        self.started.append(process)
        return process

    async def ready(self, process: services_fixture.ServiceProcess) -> None:
        """Until its health server answers /readyz 200 (``BenchmarkError`` with its log if not)."""
        try:
            await process.ready()
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            raise BenchmarkError(f"{process.module} did not become ready: {exc}") from None

    def stop(self) -> None:
        for process in self.started:
            if process.proc is not None and process.proc.poll() is None:
                process.proc.terminate()
        for process in self.started:
            if process.proc is None:
                continue
            try:
                process.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.asynccontextmanager
async def services(log_dir: pathlib.Path) -> AsyncIterator[Services]:
    """Start services inside the block; all are stopped (SIGTERM, then SIGKILL) at its end."""
    started = Services(log_dir)
    try:
        yield started
    finally:
        started.stop()


# ----------------------------------------------------------------------------- output


def print_table(figures: Sequence[Figure], file: Any = None) -> None:
    """The figures as a table (rich when it is installed, else plain text)."""
    out = file or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency of the project
        for fig in figures:
            print(f"{fig.title}: {fig.value} (target {fig.target}, {_met(fig.met)})", file=out)
            print(f"    {fig.conditions}", file=out)
            for stand_in in fig.stand_ins:
                print(f"    stand-in: {stand_in}", file=out)
        return
    stand_ins = sorted({s for fig in figures for s in fig.stand_ins})
    caption = "Stand-ins: " + "; ".join(stand_ins) if stand_ins else "No stand-ins."
    table = Table(
        title=f"Sluice benchmarks · {machine()}", caption=caption, show_lines=True, expand=True
    )
    for column, ratio in (("figure", 4), ("value", 4), ("target", 3), ("met", 1)):
        table.add_column(column, overflow="fold", ratio=ratio)
    table.add_column("conditions", overflow="fold", ratio=9)
    for fig in figures:
        table.add_row(fig.title, fig.value, fig.target, _met(fig.met), fig.conditions)
    Console(file=out, width=max(120, min(200, _terminal_width()))).print(table)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 160


def _met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def write_json(figures: Sequence[Figure], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "nats_server": nats_version(),
            "platform": platform.platform(),
        },
        "figures": [dataclasses.asdict(fig) for fig in figures],
    }
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")

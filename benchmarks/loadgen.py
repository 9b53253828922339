"""Capacity and accuracy of Sluice's load generator (``services.webhook_runner.hey``).

    python -m benchmarks.loadgen [--duration 10] [--concurrency 50] [--json PATH]

Starts a local aiohttp server in a subprocess (its own core), then, in this process on uvloop:

1. capacity: ``hey -z <duration>s -c <concurrency>`` with no rate limit against the server:
   requests/s, p50 / p99 latency, this process's CPU and peak RSS, the server's CPU;
2. accuracy: ``hey -z 10s -q 10 -c 2``, which must send 200 requests (within 5 %).

Prints a table, writes the figures as JSON with ``--json``, and exits 1 when capacity is below
``TARGET_RPS`` or the accuracy count is off by more than 5 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import resource
import select
import subprocess
import sys
import time

import prometheus_client as prom
import uvloop
from aiohttp import web

from services.webhook_runner.hey import generating, parsing, recording, summary

REPO = pathlib.Path(__file__).resolve().parents[1]
TARGET_RPS = 2000.0
ACCURACY_LINE = "hey -z 10s -q 10 -c 2"
ACCURACY_EXPECTED = 200
ACCURACY_TOLERANCE = 0.05
SERVER_START_TIMEOUT_S = 15.0
BODY = b"hello world"


# ----------------------------------------------------------------------------- the server


async def _serve() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    finally:
        await runner.cleanup()


class Server:
    """The server subprocess: started with ``--serve``, stopped by closing its stdin."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen", "--serve"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], SERVER_START_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise SystemExit(f"the benchmark server did not start (said {line!r})")
        self.port = int(line.split()[1])

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server so far (Linux /proc), None elsewhere."""
        try:
            fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            return None
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------------------- the runs


def _rss_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _capacity(
    port: int, duration_s: int, concurrency: int, server: Server
) -> dict[str, object]:
    options = parsing.parse(f"hey -z {duration_s}s -c {concurrency} http://127.0.0.1:{port}/")
    metrics = recording.Metrics(prom.CollectorRegistry())
    server_cpu = server.cpu_s()
    cpu = time.process_time()
    report = await generating.run(options, metrics=metrics, canary="benchmark")
    cpu = time.process_time() - cpu
    server_after = server.cpu_s()
    ordered = sorted(report.latencies)
    pct = dict(summary.percentiles(ordered))
    return {
        "command": f"hey -z {duration_s}s -c {concurrency} http://127.0.0.1:<port>/",
        "requests": report.requests,
        "errors": report.error_count,
        "seconds": round(report.total_s, 3),
        "requests_per_s": round(report.requests_per_s, 1),
        "p50_ms": round(pct.get(50, 0.0) * 1000, 2),
        "p99_ms": round(pct.get(99, 0.0) * 1000, 2),
        "client_cpu_percent": round(100 * cpu / report.total_s, 1),
        "server_cpu_percent": (
            round(100 * (server_after - server_cpu) / report.total_s, 1)
            if server_cpu is not None and server_after is not None
            else None
        ),
        "client_peak_rss_mb": round(_rss_mb(), 1),
    }


async def _accuracy(port: int) -> dict[str, object]:
    options = parsing.parse(f"{ACCURACY_LINE} http://127.0.0.1:{port}/")
    report = await generating.run(options)
    error = abs(report.requests - ACCURACY_EXPECTED) / ACCURACY_EXPECTED
    return {
        "command": f"{ACCURACY_LINE} http://127.0.0.1:<port>/",
        "requests": report.requests,
        "expected": ACCURACY_EXPECTED,
        "error_percent": round(100 * error, 2),
        "ok": error <= ACCURACY_TOLERANCE,
    }


def _table(capacity: dict[str, object], accuracy: dict[str, object] | None) -> str:
    rows = [
        ("capacity", str(capacity["command"])),
        ("requests/s", f"{capacity['requests_per_s']} (target {TARGET_RPS:.0f})"),
        ("requests (errors)", f"{capacity['requests']} ({capacity['errors']})"),
        ("latency p50 / p99", f"{capacity['p50_ms']} ms / {capacity['p99_ms']} ms"),
        ("client CPU", f"{capacity['client_cpu_percent']} % of one core"),
        ("server CPU", f"{capacity['server_cpu_percent']} % of one core"),
        ("client peak RSS", f"{capacity['client_peak_rss_mb']} MB"),
    ]
    if accuracy is not None:
        rows += [
            ("accuracy", str(accuracy["command"])),
            (
                "requests sent",
                f"{accuracy['requests']} (expected {accuracy['expected']} ± 5 %: "
                f"{'ok' if accuracy['ok'] else 'OFF'})",
            ),
        ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


async def _main(args: argparse.Namespace) -> int:
    server = Server()
    try:
        capacity = await _capacity(server.port, args.duration, args.concurrency, server)
        accuracy = None if args.skip_accuracy else await _accuracy(server.port)
    finally:
        server.stop()
    print(_table(capacity, accuracy))
    if args.json:
        figures = {"capacity": capacity, "accuracy": accuracy, "python": sys.version.split()[0]}
        text = json.dumps(figures, indent=2) + "\n"
        await asyncio.to_thread(pathlib.Path(args.json).write_text, text)
    rps = capacity["requests_per_s"]
    assert isinstance(rps, float)
    failed = rps < TARGET_RPS or (accuracy is not None and not accuracy["ok"])
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds of the capacity run")
    parser.add_argument("--concurrency", type=int, default=50, help="workers (-c)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here as JSON")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the capacity run")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        if args.serve:
            runner.run(_serve())
            return
        sys.exit(runner.run(_main(args)))


if __name__ == "__main__":
    main()

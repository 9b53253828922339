"""Figure 5, bus round trip: one analyzer → traffic-shifter command and its reply, no Kubernetes.

The real traffic-shifter runs as a process with no platform configured (no
``SLUICE_KUBECONFIG``, not in a pod). A valid ``SetWeights`` command then takes the whole
command path — request over NATS, queue group, bounded handler slot, decoding, the weight
checks, the handler, the typed reply — and is answered with a permanent ``CommandFailed``
("no traffic router is configured") instead of a Kubernetes call. It is sent as the analyzer
sends it (``libs.bus.request`` from a service ``Runtime``), one request at a time.

The floor is a plain nats-py request/reply against a plain nats-py responder in its own process
(``python -m benchmarks.bus --echo``) that answers with a payload of the same size, on the same
nats-server, in the same run; the two are measured in alternating blocks so that the machine's
other load falls on both alike.

    python -m benchmarks.bus --echo NATS_URL SUBJECT SIZE   # the floor's responder
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

import nats
import uvloop
from nats.aio.client import Client

from benchmarks import harness
from libs import bus as sluice_bus
from libs import lifecycle, messages, metrics, settings

ECHO_SUBJECT = "bench.echo"
WARMUP = 100
BLOCK = 100
REQUEST_TIMEOUT_S = 5.0
START_TIMEOUT_S = 15.0
OVERHEAD_TARGET_S = 0.001  # what Sluice may add to a bare request/reply at p50


def _command(i: int) -> messages.SetWeights:
    return messages.SetWeights(
        canary=messages.CanaryRef(name="podinfo", namespace="bench"),
        route="podinfo",
        service="podinfo",
        primary_weight=90,
        canary_weight=10,
        state_revision=i,
        timeout_s=REQUEST_TIMEOUT_S,
    )


async def _runtime_request(rt: lifecycle.Runtime, i: int) -> float:
    started = time.perf_counter()
    reply = await sluice_bus.request(rt, messages.CMD_TRAFFIC, _command(i))
    took = time.perf_counter() - started
    if not (isinstance(reply, messages.CommandFailed) and "no traffic router" in reply.error):
        raise harness.BenchmarkError(f"unexpected reply from the traffic-shifter: {reply!r}")
    return took


async def _floor_request(nc: Client, payload: bytes) -> float:
    started = time.perf_counter()
    await nc.request(ECHO_SUBJECT, payload, timeout=REQUEST_TIMEOUT_S)
    return time.perf_counter() - started


class Echo:
    """The floor's responder: ``python -m benchmarks.bus --echo``, stopped by closing stdin."""

    def __init__(self, url: str, size: int) -> None:
        argv = [sys.executable, "-m", "benchmarks.bus", "--echo", url, ECHO_SUBJECT, str(size)]
        self.proc = subprocess.Popen(
            argv, cwd=harness.REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), START_TIMEOUT_S)
        if line.strip() != "READY":
            raise harness.BenchmarkError(f"the echo responder did not start (said {line!r})")

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


async def _echo(url: str, subject: str, size: int) -> None:
    nc = await nats.connect(url, connect_timeout=5)
    reply = b"x" * size

    async def answer(msg: Any) -> None:
        await msg.respond(reply)

    await nc.subscribe(subject, cb=answer)
    await nc.flush(timeout=5)
    print("READY", flush=True)
    try:
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    finally:
        await nc.close()


async def _measure(requests: int) -> dict[str, Any]:
    with harness.workdir("bus") as tmp, harness.nats_server(tmp / "nats") as server:
        async with harness.services(tmp) as started:
            shifter = started.start(
                "traffic_shifter", server.url, SLUICE_KUBECONFIG="", KUBERNETES_SERVICE_HOST=""
            )
            await started.ready(shifter)
            nc = await nats.connect(server.url, connect_timeout=5)
            try:
                return await _rounds(nc, server.url, shifter, requests)
            finally:
                await nc.close()


async def _rounds(nc: Client, url: str, shifter: Any, requests: int) -> dict[str, Any]:
    payload = messages.ENCODER.encode(_command(0))
    first = await nc.request(messages.CMD_TRAFFIC, payload, timeout=REQUEST_TIMEOUT_S)
    echo = Echo(url, len(first.data))
    try:
        await echo.ready()
        async with asyncio.TaskGroup() as tg:
            rt = lifecycle.Runtime(
                name="bench",
                settings=settings.ServiceSettings(nats_request_timeout_s=REQUEST_TIMEOUT_S),
                nc=nc,
                js=nc.jetstream(),
                metrics=metrics.create("bench", "0"),
                stopping=asyncio.Event(),
                _tg=tg,
            )
            for i in range(WARMUP):
                await _runtime_request(rt, i)
                await _floor_request(nc, payload)
            stats = harness.ProcessStats(shifter.proc.pid, children=False)
            cpu_before = stats.sample().cpu_s
            handled_before = await _handled(shifter)
            shifted: list[float] = []
            floor: list[float] = []
            while len(shifted) < requests:
                for _ in range(min(BLOCK, requests - len(shifted))):
                    shifted.append(await _runtime_request(rt, len(shifted)))
                for _ in range(min(BLOCK, requests - len(floor))):
                    floor.append(await _floor_request(nc, payload))
            cpu = stats.sample().cpu_s - cpu_before
            handled_after = await _handled(shifter)
    finally:
        echo.stop()
    handled_n = handled_after[1] - handled_before[1]
    return {
        "requests": requests,
        "command_bytes": len(payload),
        "reply_bytes": len(first.data),
        "round_trip_s": shifted,
        "floor_s": floor,
        "shifter_handling_mean_s": (handled_after[0] - handled_before[0]) / handled_n,
        "shifter_cpu_per_request_s": cpu / requests,
    }


async def _handled(shifter: Any) -> tuple[float, float]:
    """(sum, count) of the traffic-shifter's handling-time histogram for its weights subject."""
    labels = {"subject": messages.CMD_TRAFFIC}
    total = await shifter.metric("sluice_message_handling_seconds_sum", **labels)
    count = await shifter.metric("sluice_message_handling_seconds_count", **labels)
    return total, count


def _figure(data: dict[str, Any]) -> harness.Figure:
    shifted = harness.summary(data["round_trip_s"])
    floor = harness.summary(data["floor_s"])
    overhead = shifted["p50"] - floor["p50"]
    return harness.Figure(
        key="bus_round_trip",
        title="bus round trip: analyzer → traffic-shifter → reply (no Kubernetes)",
        value=f"{harness.ms(shifted)} (floor {harness.ms(floor)})",
        target=f"p50 ≤ floor + {OVERHEAD_TARGET_S * 1000:g} ms",
        met=overhead <= OVERHEAD_TARGET_S,
        conditions=(
            f"{harness.machine()}; {data['requests']} sequential requests after {WARMUP} warm-up "
            f"(and as many floor requests, alternating blocks of {BLOCK}); SetWeights "
            f"({data['command_bytes']} B) answered by CommandFailed ({data['reply_bytes']} B) "
            "from a traffic-shifter with no platform; Sluice's cost over the floor at p50 "
            f"{1000 * overhead:.2f} ms; the traffic-shifter's handler "
            f"{1000 * data['shifter_handling_mean_s']:.3f} ms mean, "
            f"{1000 * data['shifter_cpu_per_request_s']:.3f} ms CPU per request"
        ),
        stand_ins=[],
        data={
            "round_trip_s": shifted,
            "floor_s": floor,
            **{k: v for k, v in data.items() if k not in ("round_trip_s", "floor_s")},
        },
    )


def run(args: argparse.Namespace) -> list[harness.Figure]:
    requests = 1000 if args.quick else 5000
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        data = runner.run(_measure(requests))
    return [_figure(data)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bus")
    parser.add_argument("--echo", nargs=3, metavar=("NATS_URL", "SUBJECT", "SIZE"), required=True)
    args = parser.parse_args()
    url, subject, size = args.echo
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_echo(url, subject, int(size)))


if __name__ == "__main__":
    main()

"""``make dev``: a local nats-server and all five services in the foreground.

Logs of every process are interleaved with a coloured prefix. Ctrl-C (or SIGTERM) stops the
services first (each drains its NATS connection), then NATS; nothing is left running.

Environment:
    SLUICE_DEV_NATS_PORT    NATS client port (default 4222; a free port if 4222 is taken)
    SLUICE_DEV_HEALTH_BASE  first health port; services get BASE+1 .. BASE+5 (default 8080)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[1]
SERVICES = ("watcher", "analyzer", "traffic_shifter", "webhook_runner", "notifier")
COLOURS = ("36", "33", "35", "32", "34", "37")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0  # longer than a service's own hard-exit timer (25s)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefix(name: str, index: int) -> str:
    if sys.stdout.isatty():
        return f"\033[{COLOURS[index % len(COLOURS)]}m{name:>15}\033[0m | "
    return f"{name:>15} | "


async def pump(stream: asyncio.StreamReader, label: str) -> None:
    while line := await stream.readline():
        sys.stdout.write(label + line.decode(errors="replace"))
        sys.stdout.flush()


async def start(
    name: str, index: int, argv: list[str], env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
    )
    assert proc.stdout is not None
    return proc, asyncio.create_task(pump(proc.stdout, prefix(name, index)))


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def stop(procs: list[tuple[str, asyncio.subprocess.Process]]) -> bool:
    """SIGTERM each process, wait, kill stragglers; True when every one exited with 0."""
    clean = True
    for _, proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for name, proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            print(f"{name} did not stop within {STOP_TIMEOUT_S}s; killing it", flush=True)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if proc.returncode != 0:
            print(f"{name} exited with code {proc.returncode}", flush=True)
            clean = False
    return clean


async def main() -> int:
    nats_port = int(os.environ.get("SLUICE_DEV_NATS_PORT", "4222"))
    if not port_free(nats_port):
        nats_port = any_free_port()
    health_base = int(os.environ.get("SLUICE_DEV_HEALTH_BASE", "8080"))
    nats_bin = str(pathlib.Path(sys.prefix) / "bin" / "nats-server")
    store = tempfile.mkdtemp(prefix="sluice-dev-nats-")

    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)

    nats, nats_pump = await start(
        "nats", 5, [nats_bin, "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", store], {}
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    code = 1
    services: list[tuple[str, asyncio.subprocess.Process]] = []
    pumps = [nats_pump]
    try:
        url = f"nats://127.0.0.1:{nats_port}"
        for index, module in enumerate(SERVICES):
            env = {
                "SLUICE_NATS_URL": url,
                "SLUICE_HEALTH_PORT": str(health_base + index + 1),
            }
            proc, task = await start(
                module, index, [sys.executable, "-m", f"services.{module}"], env
            )
            services.append((module, proc))
            pumps.append(task)
        urls = {m: f"http://127.0.0.1:{health_base + i + 1}/readyz" for i, m in enumerate(SERVICES)}
        waiting = set(urls)
        while waiting and time.monotonic() < deadline and not stop_event.is_set():
            waiting = {m for m in waiting if not await asyncio.to_thread(ready, urls[m])}
            if waiting:
                await asyncio.sleep(0.2)
        if waiting:
            print(f"not ready within {READY_TIMEOUT_S}s: {', '.join(sorted(waiting))}", flush=True)
        else:
            print(f"\nSluice dev stack ready: NATS {url}", flush=True)
            for module, ready_url in urls.items():
                print(f"  {module:<16} {ready_url.removesuffix('/readyz')}", flush=True)
            print("Ctrl-C stops everything.\n", flush=True)
        exits = [asyncio.ensure_future(p.wait()) for _, p in [("nats", nats), *services]]
        stopper = asyncio.ensure_future(stop_event.wait())
        await asyncio.wait({stopper, *exits}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        code = 0 if stop_event.is_set() else 1
        if code:
            print("a process exited on its own; stopping the rest", flush=True)
    finally:
        if not await stop(services):
            code = 1
        await stop([("nats", nats)])
        shutil.rmtree(store, ignore_errors=True)
        for task in pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    print("stopped", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

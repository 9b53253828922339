"""``make dev``: NATS and the five services come up ready, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]


def free_port_block(size: int) -> int:
    """A base port such that base+1 .. base+size are free right now.

    Taken below Linux's ephemeral range (32768+), so outgoing connections of the processes
    under test cannot grab one of them between this check and their bind.
    """
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 32000 - size)
        if all(_free(base + i) for i in range(1, size + 1)):
            return base
    pytest.fail("no free block of ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.timeout(90)
def test_make_dev_starts_everything_and_ctrl_c_stops_it(tmp_path: pathlib.Path) -> None:
    base = free_port_block(6)
    log = tmp_path / "dev.log"
    env = {
        **os.environ,
        "SLUICE_DEV_HEALTH_BASE": str(base),
        "SLUICE_DEV_NATS_PORT": str(base + 6),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.dev"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "Sluice dev stack ready" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        children = descendants(proc.pid)
        assert len(children) >= 6  # nats-server and five services
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0, log.read_text()
        text = log.read_text()
        for service in ("watcher", "analyzer", "traffic-shifter", "webhook-runner", "notifier"):
            assert f"{service} stopped (exit code 0)" in text
        alive = [pid for pid in children if _alive(pid)]
        assert not alive, f"left running: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its parent is not running
    stat = pathlib.Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"

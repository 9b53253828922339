"""The service processes: how they are configured, what they show, and how they are stopped.

``service_env`` is the environment a service runs with in the fuzz run (fast retries, short
pulls, no proxies); ``rss_mb``, ``http_status`` and ``scrape`` read a running process (RSS,
/healthz and /readyz, /metrics); ``delta`` is what a metric of one subject grew by; ``stop``
ends a process with SIGTERM as Kubernetes would, killing it only when it will not exit.
"""

from __future__ import annotations

import asyncio
import collections
import pathlib
import re
import signal
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.services import ServiceProcess
from tests.fuzz import model


def service_env(config: model.FuzzConfig) -> dict[str, str]:
    env = {
        "SLUICE_RETRY_DELAY_S": str(config.retry_delay_s),
        "SLUICE_NATS_RECONNECT_WAIT_S": "0.2",
        "SLUICE_FETCH_TIMEOUT_S": str(config.fetch_timeout_s),
        # a command's handler may not outlast what the harness waits for its reply
        "SLUICE_MAX_COMMAND_TIMEOUT_S": str(config.reply_cap_s),
        "SLUICE_SHUTDOWN_GRACE_S": "3",
        "SLUICE_HARD_EXIT_S": "6",
        "SLUICE_LOG_LEVEL": "INFO",
        "SLUICE_LOG_FORMAT": "text",
        "SLUICE_WEBHOOK_BACKOFF_BASE_S": "0.05",
        "SLUICE_WEBHOOK_BACKOFF_MAX_S": "0.2",
        # webhooks go to 127.0.0.1 only: never through a proxy from the environment
        "NO_PROXY": "*",
        "no_proxy": "*",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = ""
    return env


def rss_mb(pid: int) -> float | None:
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


async def http_status(proc: ServiceProcess, path: str) -> int | str:
    try:
        return (await proc.get(path))[0]
    except Exception as exc:  # the process may be gone: report what happened
        return type(exc).__name__


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(proc: ServiceProcess) -> Samples | None:
    try:
        status, text = await proc.get("/metrics")
    except Exception:
        return None
    if status != 200:
        return None
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: Samples | None, name: str, **labels: str) -> dict[str, float]:
    """Values of ``name`` with ``labels``, summed by their remaining label (or ``""``)."""
    out: dict[str, float] = collections.defaultdict(float)
    for (sample_name, sample_labels), value in (samples or {}).items():
        found = dict(sample_labels)
        if sample_name == name and all(found.get(k) == v for k, v in labels.items()):
            rest = [v for k, v in sorted(found.items()) if k not in labels]
            out[",".join(rest)] += value
    return dict(out)


def delta(now: Samples | None, before: Samples | None, name: str, row: str) -> dict[str, float]:
    """What ``name{subject=row}`` grew by during the run, by its other label."""
    after, start = metric(now, name, subject=row), metric(before, name, subject=row)
    return {k: v - start.get(k, 0.0) for k, v in after.items() if v - start.get(k, 0.0)}


async def stop(proc: ServiceProcess) -> int | None:
    """SIGTERM, then wait; kill after 15 s. Returns the exit code (-9: had to be killed)."""
    process = proc.proc
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, 15)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait, 5)
        return -9

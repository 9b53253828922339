"""The real Prometheus the sandbox runs: its config, its command line, its HTTP API.

Shared by the sandbox stack (``sandbox.stack``, a detached Prometheus scraping the gateway) and
the test fixtures (``tests/fixtures/prometheus.py``, one Prometheus per test). Nothing here
starts a process; callers own their processes.

    config = render_config([ScrapeJob(("127.0.0.1:9091",), "/apisix/prometheus/metrics")])
    argv = command(find_binary(), config_path, data_dir, port)
    ready(url)                                  # /-/ready answers 200
    query(url, 'sum(apisix_http_status)')       # float | None
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import yaml

HTTP_TIMEOUT = 5.0  # seconds per HTTP API call
READY_PROBE_TIMEOUT = 1.0  # seconds one /-/ready probe may take
DEFAULT_BINARY = "/usr/bin/prometheus"  # Debian package ``prometheus``

# Prometheus is always local: never go through a proxy from the environment (a shell that
# sourced the sandbox's env file has HTTP_PROXY set to the name proxy).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusError(Exception):
    """Prometheus could not be started or its HTTP API answered with an error."""


@dataclasses.dataclass(frozen=True)
class ScrapeJob:
    targets: tuple[str, ...]  # host:port
    metrics_path: str = "/metrics"
    job_name: str = "sandbox"


def render_config(jobs: Sequence[ScrapeJob], scrape_interval: str = "1s") -> str:
    """``prometheus.yml`` scraping every job's targets each ``scrape_interval`` (jobs without
    targets are left out)."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": job.job_name,
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "metrics_path": job.metrics_path,
                "static_configs": [{"targets": list(job.targets)}],
            }
            for job in jobs
            if job.targets
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def find_binary() -> str:
    binary = shutil.which("prometheus") or (
        DEFAULT_BINARY if os.access(DEFAULT_BINARY, os.X_OK) else None
    )
    if binary is None:
        raise PrometheusError(
            "the prometheus binary is missing: install the Debian package 'prometheus' "
            "(make setup runs scripts/ensure-system-tools.sh)"
        )
    return binary


def command(
    binary: str,
    config_path: pathlib.Path,
    data_dir: pathlib.Path,
    port: int,
    host: str = "127.0.0.1",
    log_level: str = "warn",
) -> list[str]:
    """The argv of a Prometheus serving ``http://host:port`` with its TSDB in ``data_dir``."""
    return [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        f"--log.level={log_level}",
    ]


def ready(url: str, timeout: float = READY_PROBE_TIMEOUT) -> bool:
    """Whether ``<url>/-/ready`` answers 200 now."""
    try:
        with _DIRECT.open(f"{url}/-/ready", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def api(url: str, path: str, timeout: float = HTTP_TIMEOUT, **params: str) -> dict[str, Any]:
    """GET an HTTP API path (``/api/v1/...``), JSON body; ``PrometheusError`` on failure."""
    full = f"{url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with _DIRECT.open(full, timeout=timeout) as resp:
            body: dict[str, Any] = json.load(resp)
    except urllib.error.HTTPError as e:
        raise PrometheusError(f"GET {path} {params}: HTTP {e.code}: {e.read()[:300]!r}") from e
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        raise PrometheusError(f"GET {path} {params}: {e}") from e
    if body.get("status") != "success":
        raise PrometheusError(f"GET {path} {params}: {body}")
    return body


def scalar(result: dict[str, Any]) -> float | None:
    """The first sample of a vector result (``None`` when empty) or the scalar."""
    data = result.get("data") or {}
    kind, value = data.get("resultType"), data.get("result") or []
    if kind == "scalar":
        return float(value[1])
    if kind == "vector":
        return float(value[0]["value"][1]) if value else None
    raise PrometheusError(f"expected a vector or scalar result, got {kind!r}")


def query(url: str, promql: str, timeout: float = HTTP_TIMEOUT) -> float | None:
    """The instant value of ``promql`` now (see ``scalar``); NaN is returned as NaN. Blocking."""
    return scalar(api(url, "/api/v1/query", timeout=timeout, query=promql))

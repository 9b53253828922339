"""The standalone sandbox stack (``python -m sandbox up --standalone``) as data.

APISIX without Kubernetes: NATS (JetStream), Prometheus (scraping the gateway's metrics every
second), the gateway with APISIX's Admin API and no Kubernetes sync, and two podinfo-like apps
as plain processes (``python -m sandbox.app``), ``stable`` on 127.0.0.2 and ``canary`` on
127.0.0.3 (APISIX's ``node`` label has no port: the builtin checks tell them apart by address),
both version ``6.0.0`` — the two upstream nodes a canary splits traffic between. No Kubernetes
simulator, no name proxy. ``sandbox.control`` starts, checks and stops what ``plan`` lists,
exactly as for the Kubernetes stack, and ``deploy`` restarts one app with another version or
environment on the same port (a new version deployed behind its upstream).

The Admin API key is generated at every ``up`` into ``<dir>/apisix-admin-key`` (mode 0600);
the env file names it (``APISIX_ADMIN_KEY_FILE``), never its content. Ports: Admin API 9180,
stable 9898, canary 9899 when free (else the OS picks), like the other ports.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Mapping, Sequence

from sandbox import readiness, stack
from sandbox.stack import Component, Layout

HOST = stack.HOST
APPS = ("stable", "canary")
# each app on a loopback address of its own: APISIX's ``node`` label is the upstream's IP
# without the port, and the builtin checks tell the canary's requests apart by it
APP_HOSTS: Mapping[str, str] = {"stable": "127.0.0.2", "canary": "127.0.0.3"}
DEFAULT_VERSION = "6.0.0"
PORTS: Mapping[str, int] = {
    "gateway_admin": 9180,  # APISIX's Admin API
    "app_stable": 9898,  # podinfo's port
    "app_canary": 9899,
}
ADMIN_KEY_FILE = "apisix-admin-key"


def admin_key_path(layout: Layout) -> pathlib.Path:
    return layout.root / ADMIN_KEY_FILE


def write_admin_key(layout: Layout) -> pathlib.Path:
    """A fresh random key in ``<dir>/apisix-admin-key``, readable by its owner only."""
    path = admin_key_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # also when the file was there with other bits
        f.write(secrets.token_hex(16) + "\n")
    return path


def app_component(
    name: str, port: int, version: str = DEFAULT_VERSION, env: Sequence[tuple[str, str]] = ()
) -> Component:
    """One app process: ``python -m sandbox.app`` on its own loopback address (``APP_HOSTS``)
    and ``port``, ready when ``/readyz`` answers 200."""
    host = APP_HOSTS[name]
    words = [w for key, value in env for w in ("--env", f"{key}={value}")]
    argv = (
        *stack._python("sandbox.app", host=host, port=port, version=version, name=name),
        *words,
    )
    url = f"http://{host}:{port}"
    return Component(name, argv, readiness.HttpAnswers(f"{url}/readyz"), url=url)


def plan(layout: Layout, ports: Mapping[str, int]) -> list[Component]:
    """The standalone stack's processes in start order."""
    base = stack.plan(layout, ports, stack.DEFAULT_POD_NETWORK)
    nats, prometheus = (c for c in base if c.name in ("nats", "prometheus"))
    metrics = f"http://{HOST}:{ports['gateway_metrics']}"
    gateway = Component(
        "gateway",
        stack._python(
            "sandbox.gateway",
            admin_key_file=admin_key_path(layout),
            host=HOST,
            port=ports["gateway"],
            metrics_port=ports["gateway_metrics"],
            admin_port=ports["gateway_admin"],
        ),
        readiness.HttpAnswers(f"{metrics}/sandbox/healthz"),
        url=f"http://{HOST}:{ports['gateway']}",
    )
    apps = [app_component(name, ports[f"app_{name}"]) for name in APPS]
    return [nats, prometheus, gateway, *apps]


def wiring(ports: Mapping[str, int], since: float) -> list[Component]:
    """Prometheus has scraped the gateway since ``since`` (the Admin API answers by then)."""
    admin = Component(
        "gateway",
        (),
        readiness.HttpAnswers(f"{admin_url(ports)}/apisix/admin/routes", statuses=(401,)),
        url="serves the Admin API",
    )
    return [admin, *(c for c in stack.wiring(ports, since) if c.name == "prometheus")]


def admin_url(ports: Mapping[str, int]) -> str:
    return f"http://{HOST}:{ports['gateway_admin']}"


def sluice_plan(
    layout: Layout, ports: Mapping[str, int], extra_env: Mapping[str, str]
) -> list[Component]:
    """Sluice's five services in standalone mode against this stack (no Kubernetes)."""
    env = {
        "SLUICE_MODE": "standalone",
        "SLUICE_NATS_URL": f"nats://{HOST}:{ports['nats']}",
        "SLUICE_APISIX_ADMIN_URL": admin_url(ports),
        "SLUICE_APISIX_ADMIN_KEY_FILE": str(admin_key_path(layout)),
        "SLUICE_PROMETHEUS_URL": f"http://{HOST}:{ports['prometheus']}",
        "SLUICE_LOADTESTER_PORT": str(ports["loadtester"]),
        "SLUICE_LOADTESTER_HOST": HOST,
        "NO_PROXY": f"{HOST},localhost",
        "no_proxy": f"{HOST},localhost",
        **extra_env,
    }
    return stack.sluice_components(ports, env)


def environment(layout: Layout, ports: Mapping[str, int]) -> dict[str, str]:
    """What the standalone stack's ``env`` file holds."""
    metrics_base = f"http://{HOST}:{ports['gateway_metrics']}"
    key_file = str(admin_key_path(layout))
    no_proxy = f"{HOST},localhost"
    return {
        "SANDBOX_DIR": str(layout.root),
        "SANDBOX_MODE": "standalone",
        "NATS_URL": f"nats://{HOST}:{ports['nats']}",
        "PROMETHEUS_URL": f"http://{HOST}:{ports['prometheus']}",
        "GATEWAY_URL": f"http://{HOST}:{ports['gateway']}",
        "GATEWAY_METRICS_URL": metrics_base + stack.METRICS_PATH,
        "GATEWAY_ROUTES_URL": f"{metrics_base}/sandbox/routes",
        "APISIX_ADMIN_URL": admin_url(ports),
        "APISIX_ADMIN_KEY_FILE": key_file,
        "STABLE_NODE": f"{APP_HOSTS['stable']}:{ports['app_stable']}",
        "CANARY_NODE": f"{APP_HOSTS['canary']}:{ports['app_canary']}",
        "LOADTESTER_PORT": str(ports["loadtester"]),
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        # Sluice's services started in this shell run in standalone mode against the sandbox
        "SLUICE_MODE": "standalone",
        "SLUICE_NATS_URL": f"nats://{HOST}:{ports['nats']}",
        "SLUICE_APISIX_ADMIN_URL": admin_url(ports),
        "SLUICE_APISIX_ADMIN_KEY_FILE": key_file,
        "SLUICE_PROMETHEUS_URL": f"http://{HOST}:{ports['prometheus']}",
        "SLUICE_LOADTESTER_PORT": str(ports["loadtester"]),
    }

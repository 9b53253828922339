"""The sandbox stack as data: which processes, on which ports, with which environment.

A ``Component`` is a name, an argv, extra environment, a readiness check and the components
that must answer before it starts; ``plan`` lists them in start order — NATS (JetStream),
Prometheus (scraping the gateway every second), the Kubernetes simulator, the APISIX gateway
simulator and the in-cluster name proxy. Adding a process (the five Sluice services, later) is
one more ``Component`` in ``plan``; ``sandbox.control`` starts, checks and stops whatever is
planned, and writes ``environment`` to the env file.

State directory (``--dir`` / ``SANDBOX_DIR``, default ``<repo>/.sandbox``), see ``Layout``::

    env               export KEY=VALUE lines; written last, once everything answers
    state.json        ports, pod network and per process: pid, start time, argv, log, URL
    lock              flock held by up / down, so two of them never interleave
    logs/<name>.log   stdout + stderr of each process (appended across runs)
    kubeconfig        written by the simulator;  kubecache/  kubectl's discovery cache
    nats/             JetStream storage;  prometheus/  TSDB;  prometheus.yml  its config
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
import shlex
import socket
import sys
from collections.abc import Mapping

from sandbox import prometheus as sandbox_prometheus
from sandbox import readiness
from sandbox.kube import cluster as kube_cluster

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO_ROOT / ".sandbox"
HOST = readiness.HOST
DEFAULT_POD_NETWORK = ipaddress.IPv4Network("127.42.0.0/16")  # ClusterSettings' default
# Pod networks ``up`` picks from when none is given, in order (127.43 is the Service network).
POD_NETWORK_CANDIDATES = tuple(
    ipaddress.IPv4Network(f"127.{n}.0.0/16") for n in (42, 44, 45, 46, 47, 48, 49)
)
POD_NETWORK_SETTING = "--pod-network / SANDBOX_POD_NETWORK"
SCRAPE_INTERVAL = "1s"
METRICS_PATH = "/apisix/prometheus/metrics"

# Each port's fixed default (the real system's well-known port); see ``choose_ports``.
DEFAULT_PORTS: Mapping[str, int] = {
    "nats": 4222,
    "prometheus": 9090,
    "kube": 6443,
    "gateway": 9080,  # APISIX's data plane
    "gateway_metrics": 9091,  # APISIX's prometheus export server
    "proxy": 3128,
    "loadtester": 8080,  # the webhook-runner's loadtester API (Service flagger-loadtester.test)
}

# Sluice's services, started by ``up --with-sluice`` as processes of the stack (the sandbox
# imports nothing of Sluice: it runs ``python -m services.<name>``), each with its health port.
SLUICE_SERVICES = ("watcher", "analyzer", "traffic_shifter", "webhook_runner", "notifier")
SLUICE_HEALTH_PORTS: Mapping[str, int] = {
    f"sluice_{name}": 8081 + index for index, name in enumerate(SLUICE_SERVICES)
}


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    ready: readiness.Check
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    needs: tuple[str, ...] = ()  # components that must answer before this one starts
    url: str = ""  # shown by ``status``


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths inside one state directory."""

    root: pathlib.Path

    @property
    def env(self) -> pathlib.Path:
        return self.root / "env"

    @property
    def state(self) -> pathlib.Path:
        return self.root / "state.json"

    @property
    def lock(self) -> pathlib.Path:
        return self.root / "lock"

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.root / "kubeconfig"

    @property
    def kubecache(self) -> pathlib.Path:
        return self.root / "kubecache"

    @property
    def prometheus_config(self) -> pathlib.Path:
        return self.root / "prometheus.yml"

    def log(self, name: str) -> pathlib.Path:
        return self.root / "logs" / f"{name}.log"


def choose_ports(
    free_ports: bool = False, extra: Mapping[str, int] | None = None
) -> dict[str, int]:
    """The rule: each port is its fixed default (``DEFAULT_PORTS``, then ``extra``) when that
    is free on 127.0.0.1, else a free port the OS picks; ``free_ports`` skips the defaults. All
    ports are held open together while choosing, so no two come out equal."""
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        for name, default in {**DEFAULT_PORTS, **SLUICE_HEALTH_PORTS, **(extra or {})}.items():
            for candidate in (0,) if free_ports else (default, 0):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((HOST, candidate))
                except OSError:
                    sock.close()
                    continue
                held.append(sock)
                ports[name] = int(sock.getsockname()[1])
                break
    finally:
        for sock in held:
            sock.close()
    return ports


class PodNetworkError(Exception):
    """No usable pod network (the message names the setting to change)."""


def choose_pod_network(given: ipaddress.IPv4Network | None = None) -> ipaddress.IPv4Network:
    """``given`` when no running cluster claims it, else ``PodNetworkError``; without one, the
    first of ``POD_NETWORK_CANDIDATES`` that no running cluster claims (each simulated cluster
    holds its node's kubelet port on the network, ``sandbox.kube.cluster``)."""
    if given is not None:
        if kube_cluster.pod_network_in_use(given):
            raise PodNetworkError(
                f"pod network {given} is in use by another running stack; give this one "
                f"another with {POD_NETWORK_SETTING} (e.g. 127.46.0.0/16)"
            )
        return given
    for candidate in POD_NETWORK_CANDIDATES:
        if not kube_cluster.pod_network_in_use(candidate):
            return candidate
    tried = ", ".join(str(n) for n in POD_NETWORK_CANDIDATES)
    raise PodNetworkError(
        f"every default pod network is in use by other running stacks ({tried}); give this "
        f"one a free loopback /16 with {POD_NETWORK_SETTING}"
    )


def _python(module: str, **flags: object) -> tuple[str, ...]:
    """``python -m <module>`` with ``--flag value`` words (``pod_network=`` → ``--pod-network``)."""
    words = (w for k, v in flags.items() for w in (f"--{k.replace('_', '-')}", str(v)))
    return (sys.executable, "-m", module, *words)


def plan(
    layout: Layout, ports: Mapping[str, int], pod_network: ipaddress.IPv4Network
) -> list[Component]:
    """The stack's processes in start order."""
    url = {name: f"http://{HOST}:{port}" for name, port in ports.items()}
    nats = (str(pathlib.Path(sys.executable).parent / "nats-server"), "-js", "-a", HOST)
    kubeconfig = str(layout.kubeconfig)
    return [
        Component(
            "nats",
            (*nats, "-sd", str(layout.root / "nats"), "-p", str(ports["nats"])),
            readiness.PortGreets(ports["nats"], b"INFO"),
            url=f"nats://{HOST}:{ports['nats']}",
        ),
        Component(
            "prometheus",
            tuple(
                sandbox_prometheus.command(
                    sandbox_prometheus.find_binary(),
                    layout.prometheus_config,
                    layout.root / "prometheus",
                    ports["prometheus"],
                    HOST,
                    log_level="info",
                )
            ),
            readiness.HttpAnswers(f"{url['prometheus']}/-/ready"),
            url=url["prometheus"],
        ),
        Component(
            "kube",
            _python(
                "sandbox.kube",
                host=HOST,
                port=ports["kube"],
                kubeconfig=kubeconfig,
                pod_network=pod_network,
            ),
            readiness.HttpAnswers(f"{url['kube']}/version"),
            url=url["kube"],
        ),
        Component(
            "gateway",
            _python(
                "sandbox.gateway",
                kubeconfig=kubeconfig,
                host=HOST,
                port=ports["gateway"],
                metrics_port=ports["gateway_metrics"],
            ),
            readiness.HttpAnswers(f"{url['gateway_metrics']}/sandbox/healthz"),  # 200 once synced
            needs=("kube",),  # reads the kubeconfig the simulator writes
            url=url["gateway"],
        ),
        Component(
            "proxy",
            _python("sandbox.proxy", kubeconfig=kubeconfig, host=HOST, port=ports["proxy"]),
            readiness.HttpAnswers(f"{url['proxy']}/", statuses=(400,)),  # "not a proxy request"
            needs=("kube",),
            url=url["proxy"],
        ),
    ]


def sluice_plan(
    layout: Layout, ports: Mapping[str, int], extra_env: Mapping[str, str]
) -> list[Component]:
    """Sluice's five services against this stack: its NATS, Kubernetes API, Prometheus and the
    loadtester port; ``extra_env`` (e.g. a Slack URL) goes to every one of them."""
    proxy_url = f"http://{HOST}:{ports['proxy']}"
    env = {
        "SLUICE_NATS_URL": f"nats://{HOST}:{ports['nats']}",
        "SLUICE_KUBECONFIG": str(layout.kubeconfig),
        "SLUICE_PROMETHEUS_URL": f"http://{HOST}:{ports['prometheus']}",
        "SLUICE_LOADTESTER_PORT": str(ports["loadtester"]),
        "SLUICE_LOADTESTER_HOST": HOST,
        # the webhook-runner reaches flagger-loadtester.test and apisix-gateway.apisix by name
        "HTTP_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "NO_PROXY": f"{HOST},localhost",
        "no_proxy": f"{HOST},localhost",
        **extra_env,
    }
    return sluice_components(ports, env)


def sluice_components(ports: Mapping[str, int], env: Mapping[str, str]) -> list[Component]:
    """The five services as processes with ``env``, each on its health port."""
    components = []
    for name in SLUICE_SERVICES:
        port = ports[f"sluice_{name}"]
        components.append(
            Component(
                f"sluice-{name.replace('_', '-')}",
                (sys.executable, "-m", f"services.{name}"),
                readiness.HttpAnswers(f"http://{HOST}:{port}/readyz"),
                env={**env, "SLUICE_HEALTH_PORT": str(port)},
                url=f"http://{HOST}:{port}/metrics",
            )
        )
    return components


def prometheus_config(ports: Mapping[str, int]) -> str:
    """Prometheus scrapes the gateway's export server (APISIX's :9091) every second."""
    job = sandbox_prometheus.ScrapeJob(
        (f"{HOST}:{ports['gateway_metrics']}",), METRICS_PATH, job_name="apisix"
    )
    return sandbox_prometheus.render_config([job], SCRAPE_INTERVAL)


def wiring(ports: Mapping[str, int], since: float) -> list[Component]:
    """Checks that the processes reach each other, run once the cluster objects exist: each is
    named after the component whose log explains a failure (its argv is unused).

    * the name proxy resolves ``apisix-gateway.apisix`` (its watch has seen the Service) and
      the gateway behind it answers with its own ``404 Route Not Found``;
    * Prometheus has scraped the gateway's metrics after ``since`` (a Unix time: the TSDB
      persists across runs and keeps the last run's samples, without staleness markers).
    """
    # timestamp() of a plain selector is the sample's time (of any other expression: now)
    up = 'up{job="apisix"}'
    scraped = f"count(timestamp({up}) > {since:.3f} and {up} == 1)"
    return [
        Component(
            "proxy",
            (),
            readiness.HttpAnswers(
                "http://apisix-gateway.apisix/sandbox/ready",
                statuses=(404,),
                proxy=f"http://{HOST}:{ports['proxy']}",
                header_absent="X-Sandbox-Proxy-Error",
            ),
            url="resolves apisix-gateway.apisix",
        ),
        Component(
            "prometheus",
            (),
            readiness.PrometheusSees(f"http://{HOST}:{ports['prometheus']}", scraped),
            url="scrapes the gateway",
        ),
    ]


def environment(
    layout: Layout, ports: Mapping[str, int], pod_network: ipaddress.IPv4Network
) -> dict[str, str]:
    """What ``env`` holds. kubectl (Go) never proxies loopback addresses; Python's urllib,
    requests and aiohttp do unless NO_PROXY says otherwise, so NO_PROXY keeps the stack's own
    URLs direct. curl reads only the lower-case ``http_proxy``, hence both spellings."""
    proxy_url = f"http://{HOST}:{ports['proxy']}"
    metrics_base = f"http://{HOST}:{ports['gateway_metrics']}"
    no_proxy = f"{HOST},localhost"
    return {
        "SANDBOX_DIR": str(layout.root),
        "KUBECONFIG": str(layout.kubeconfig),
        "KUBECACHEDIR": str(layout.kubecache),
        "KUBE_URL": f"http://{HOST}:{ports['kube']}",
        "NATS_URL": f"nats://{HOST}:{ports['nats']}",
        "PROMETHEUS_URL": f"http://{HOST}:{ports['prometheus']}",
        "GATEWAY_URL": f"http://{HOST}:{ports['gateway']}",
        "GATEWAY_METRICS_URL": metrics_base + METRICS_PATH,
        "GATEWAY_ROUTES_URL": f"{metrics_base}/sandbox/routes",
        "NAME_PROXY_URL": proxy_url,
        "HTTP_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "LOADTESTER_PORT": str(ports["loadtester"]),
        "POD_NETWORK": str(pod_network),
        # Sluice's services started in this shell use the sandbox: its NATS, its Kubernetes
        # API, and the port Service flagger-loadtester.test points at
        "SLUICE_NATS_URL": f"nats://{HOST}:{ports['nats']}",
        "SLUICE_KUBECONFIG": str(layout.kubeconfig),
        "SLUICE_LOADTESTER_PORT": str(ports["loadtester"]),
    }


def render_env(values: Mapping[str, str]) -> str:
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lines = [f"# sandbox stack, written by `python -m sandbox up` at {stamp}; `source` it."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def parse_env(text: str) -> dict[str, str]:
    """The values of an env file as ``render_env`` writes it."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = "".join(shlex.split(value)) if value else ""
    return values

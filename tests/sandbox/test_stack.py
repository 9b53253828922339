"""``python -m sandbox up / status / down``: the whole stack as a developer uses it.

One stack in a temporary ``SANDBOX_DIR``: the seed scenario's objects applied with the real
kubectl, Flagger's podinfo Deployment + HPA rolled out to two ready pods, requests through the
gateway and through the name proxy (``HTTP_PROXY``), then ``down`` leaves nothing running.
"""

from __future__ import annotations

import io
import pathlib
import shlex
import socket
import sys

import aiohttp
import pytest

from sandbox import control, processes, readiness, stack
from tests.sandbox.e2e import support

PODINFO_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: podinfo, namespace: test}
spec:
  selector: {app: podinfo}
  ports: [{name: http, port: 80, targetPort: 9898}]
"""

ENV_KEYS = {
    "KUBECONFIG",
    "NATS_URL",
    "PROMETHEUS_URL",
    "GATEWAY_URL",
    "GATEWAY_METRICS_URL",
    "HTTP_PROXY",
    "NO_PROXY",
    "LOADTESTER_PORT",
}

# A Python client with nothing but the env file: urllib honours HTTP_PROXY and NO_PROXY.
PYTHON_CLIENT = """
import json, os, urllib.request
def get(url):
    req = urllib.request.Request(url, headers={"Host": "app.example.com"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["version"]
print(get(os.environ["GATEWAY_URL"] + "/api/info"), get("http://apisix-gateway.apisix/api/info"))
"""


def listening(url: str) -> bool:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


@pytest.mark.e2e
async def test_up_seed_scenario_requests_and_down(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "sandbox"
    env = support.base_env(root)
    up = await support.run(
        support.sandbox_command(
            "up", "--free-ports", "--pod-network", str(support.random_pod_network())
        ),
        env,
    )
    assert up.code == 0, f"{up.stdout}\n{up.stderr}"
    values = stack.parse_env((root / "env").read_text())
    assert values.keys() >= ENV_KEYS
    assert values["KUBECONFIG"] == str(root.resolve() / "kubeconfig")
    assert values["NO_PROXY"] == "127.0.0.1,localhost"
    run = support.Stack(root, env | values)
    handles = run.handles()
    assert set(handles) == {"nats", "prometheus", "kube", "gateway", "proxy"}
    try:
        # up returns once Prometheus has scraped the gateway: no waiting needed here
        scraped = await support.query(values["PROMETHEUS_URL"], 'up{job="apisix"}')
        assert scraped == 1

        # idempotent: a second up says so and starts nothing
        again = await run.sandbox("up")
        assert again.code == 0, again.stderr
        assert "already running" in again.stdout
        assert run.handles() == handles
        status = await run.sandbox("status")
        assert status.code == 0
        assert status.stdout.count("running") >= 5

        # `source env && kubectl get ns` from a shell that knows nothing else
        shell = await support.run(
            ["bash", "-c", f"source {shlex.quote(str(root / 'env'))} && kubectl get ns"],
            env,
        )
        assert shell.code == 0, shell.stderr
        names = {line.split()[0] for line in shell.stdout.splitlines()[1:]}
        assert {"apisix", "test", "default"} <= names

        # pre-installed Services and their hand-written Endpoints
        eps = await run.kubectl("get", "endpoints", "-A", "-o", "name")
        assert "endpoints/apisix-gateway" in eps.stdout
        assert "endpoints/flagger-loadtester" in eps.stdout
        port = await run.kubectl(
            "get",
            "endpoints",
            "flagger-loadtester",
            "-n",
            "test",
            "-o",
            "jsonpath={.subsets[0].ports[0].port}",
        )
        assert port.stdout == values["LOADTESTER_PORT"]

        # the seed scenario
        applied = await run.kubectl(
            "apply",
            *("-f", str(support.MANIFESTS / "podinfo-apisixroute.yaml")),
            *("-f", str(support.MANIFESTS / "podinfo-deployment.yaml")),
            *("-f", str(support.MANIFESTS / "podinfo-hpa.yaml")),
            *("-f", str(support.MANIFESTS / "podinfo-canary.yaml")),
        )
        for line in (
            "apisixroute.apisix.apache.org/podinfo created",
            "deployment.apps/podinfo created",
            "horizontalpodautoscaler.autoscaling/podinfo created",
            "canary.flagger.app/podinfo created",
        ):
            assert line in applied.stdout
        canaries = await run.kubectl("get", "canaries", "-n", "test")
        assert canaries.stdout.splitlines()[0].split() == [
            "NAME",
            "STATUS",
            "WEIGHT",
            "LASTTRANSITIONTIME",
        ]
        assert canaries.stdout.splitlines()[1].split()[0] == "podinfo"

        rollout = await run.kubectl(
            "rollout", "status", "deployment/podinfo", "-n", "test", "--timeout=60s"
        )
        assert "successfully rolled out" in rollout.stdout

        # Flagger's HPA (minReplicas 2) scales the Deployment (no replicas: 1) to two ready pods
        async def ready_replicas() -> str:
            out = await run.kubectl(
                "get",
                "deployment",
                "podinfo",
                "-n",
                "test",
                "-o",
                "jsonpath={.status.readyReplicas}",
            )
            return out.stdout

        await support.poll(ready_replicas, lambda v: v == "2", 30, "2 ready podinfo replicas")
        pods = await run.kubectl(
            "get",
            "pods",
            "-n",
            "test",
            "-l",
            "app=podinfo",
            "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
        )
        assert pods.stdout.split() == ["True", "True"]

        # requests through the gateway, once Service podinfo has endpoints
        await run.kubectl("apply", "-f", "-", stdin=PODINFO_SERVICE)
        await run.wait_route("test_podinfo_method", {"podinfo": (100, 2)})
        async with aiohttp.ClientSession() as http:
            status_code, info = await support.get_json(
                http, values["GATEWAY_URL"] + "/api/info", headers={"Host": "app.example.com"}
            )
            assert status_code == 200, info
            assert info["version"] == "6.0.0"
            assert info["hostname"].startswith("podinfo-")
            # ... and through the name proxy, as Flagger's loadtester reaches APISIX in-cluster
            status_code, info = await support.get_json(
                http,
                "http://apisix-gateway.apisix/api/info",
                headers={"Host": "app.example.com"},
                proxy=values["HTTP_PROXY"],
            )
            assert status_code == 200, info
            assert info["version"] == "6.0.0"
        client = await support.run([sys.executable, "-c", PYTHON_CLIENT], run.env)
        assert client.code == 0, client.stderr
        assert client.stdout.split() == ["6.0.0", "6.0.0"]
    finally:
        down = await run.sandbox("down")
    assert down.code == 0, down.stderr
    assert not [name for name, h in handles.items() if processes.alive(h)]
    for key in ("KUBE_URL", "GATEWAY_URL", "PROMETHEUS_URL", "NAME_PROXY_URL"):
        assert not listening(values[key]), f"{key} {values[key]} still answers"
    assert not (root / "env").exists()
    second = await run.sandbox("down")
    assert second.code == 0, second.stderr
    assert "not running" in second.stdout
    assert (await run.sandbox("status")).code == 3


@pytest.mark.integration
def test_a_component_that_exits_is_named_with_its_log(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = stack.Component(
        "crasher",
        (sys.executable, "-c", "import sys; print('boom: no config'); sys.exit(3)"),
        readiness.PortGreets(1),
    )
    slow = stack.Component(
        "sleeper", (sys.executable, "-c", "import time; time.sleep(60)"), readiness.PortGreets(1)
    )
    monkeypatch.setattr(stack, "plan", lambda *_args: [slow, crash])
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert control.up(tmp_path, free_ports=True, timeout=20, out=io.StringIO()) == 1
    message = err.getvalue()
    assert "crasher exited during start-up" in message
    assert str(tmp_path.resolve() / "logs" / "crasher.log") in message
    assert "boom: no config" in message
    assert "sleeper" in message  # stopped again
    assert not (tmp_path / "state.json").exists()
    assert not (tmp_path / "env").exists()


@pytest.mark.integration
def test_a_component_that_never_answers_times_out(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = stack.Component(
        "sleeper", (sys.executable, "-c", "import time; time.sleep(60)"), readiness.PortGreets(1)
    )
    monkeypatch.setattr(stack, "plan", lambda *_args: [slow])
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert control.up(tmp_path, free_ports=True, timeout=0.5, out=io.StringIO()) == 1
    assert "sleeper did not become ready within 0.5s" in err.getvalue()
    assert "logs/sleeper.log" in err.getvalue()
    assert control.status(tmp_path, out=io.StringIO()) == 3


def test_env_file_round_trips() -> None:
    values = {"A": "plain", "B": "with space", "C": "it's", "D": ""}
    assert stack.parse_env(stack.render_env(values)) == values


def test_ports_are_distinct_and_a_taken_default_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = stack.choose_ports(free_ports=True)
    assert len(set(ports.values())) == len(ports)
    assert len(ports) == len(stack.DEFAULT_PORTS) + len(stack.SLUICE_HEALTH_PORTS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(stack, "DEFAULT_PORTS", {"nats": port, "kube": port})
        chosen = stack.choose_ports()
    assert port not in chosen.values()
    assert chosen["nats"] != chosen["kube"]

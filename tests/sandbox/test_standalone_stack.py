"""``python -m sandbox up --standalone``: APISIX without Kubernetes, as a developer uses it.

One stack in a temporary ``SANDBOX_DIR``: the Admin API answers with the generated key, a
route splitting traffic between the stable and canary apps serves through the gateway,
``deploy canary --version 6.0.1`` changes what the canary node answers, ``down`` stops all.
"""

from __future__ import annotations

import pathlib
import stat
import subprocess
import sys

import aiohttp
import pytest

from sandbox import processes, stack, standalone
from tests.sandbox.e2e import support

ENV_KEYS = {
    "APISIX_ADMIN_URL",
    "APISIX_ADMIN_KEY_FILE",
    "GATEWAY_URL",
    "STABLE_NODE",
    "CANARY_NODE",
    "NATS_URL",
    "PROMETHEUS_URL",
    "SLUICE_MODE",
    "SLUICE_APISIX_ADMIN_URL",
    "SLUICE_APISIX_ADMIN_KEY_FILE",
}


def read_key(path: pathlib.Path) -> tuple[int, str]:
    return stat.S_IMODE(path.stat().st_mode), path.read_text().strip()


@pytest.mark.e2e
async def test_up_standalone_admin_api_deploy_and_down(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "sandbox"
    env = support.base_env(root)
    up = await support.run(support.sandbox_command("up", "--standalone", "--free-ports"), env)
    assert up.code == 0, f"{up.stdout}\n{up.stderr}"
    values = stack.parse_env((root / "env").read_text())
    assert values.keys() >= ENV_KEYS
    assert "KUBECONFIG" not in values
    assert "HTTP_PROXY" not in values
    key_file = pathlib.Path(values["APISIX_ADMIN_KEY_FILE"])
    assert key_file == root.resolve() / "apisix-admin-key"
    mode, key = read_key(key_file)
    assert mode == 0o600
    run = support.Stack(root, env | values)
    handles = run.handles()
    assert set(handles) == {"nats", "prometheus", "gateway", "stable", "canary"}
    admin = values["APISIX_ADMIN_URL"] + "/apisix/admin"
    latest = dict(handles)
    try:
        scraped = await support.query(values["PROMETHEUS_URL"], 'up{job="apisix"}')
        assert scraped == 1
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{admin}/routes", timeout=support.HTTP) as resp:
                assert resp.status == 401
            headers = {"X-API-KEY": key}
            async with http.get(f"{admin}/routes", headers=headers, timeout=support.HTTP) as resp:
                assert resp.status == 200
                assert await resp.json() == {"list": [], "total": 0}
            for name, node in (("stable", "STABLE_NODE"), ("canary", "CANARY_NODE")):
                body = {"nodes": {values[node]: 1}}
                async with http.put(
                    f"{admin}/upstreams/{name}", json=body, headers=headers, timeout=support.HTTP
                ) as resp:
                    assert resp.status == 201, await resp.text()
            split = {"rules": [{"weighted_upstreams": [{"upstream_id": "canary", "weight": 1}]}]}
            route = {"uri": "/*", "upstream_id": "stable", "plugins": {"traffic-split": split}}
            async with http.put(
                f"{admin}/routes/podinfo", json=route, headers=headers, timeout=support.HTTP
            ) as resp:
                assert resp.status == 201, await resp.text()

            canary_url = f"http://{values['CANARY_NODE']}/version"
            status, body = await support.get_json(http, canary_url)
            assert (status, body["version"]) == (200, "6.0.0")
            status, body = await support.get_json(http, values["GATEWAY_URL"] + "/api/info")
            assert (status, body["version"]) == (200, "6.0.0")

            deployed = await run.sandbox(
                "deploy", "canary", "--version", "6.0.1", "--env", "SANDBOX_LATENCY_MS=1"
            )
            assert deployed.code == 0, deployed.stderr
            status, body = await support.get_json(http, canary_url)
            assert (status, body["version"]) == (200, "6.0.1")
            status, body = await support.get_json(http, values["GATEWAY_URL"] + "/api/info")
            assert (status, body["version"]) == (200, "6.0.1")  # all traffic on the canary
            status, body = await support.get_json(http, f"http://{values['STABLE_NODE']}/env")
            assert status == 200
        latest = run.handles()
        assert latest["canary"] != handles["canary"]
        assert not processes.alive(handles["canary"])
        shown = await run.sandbox("status")
        assert shown.code == 0, shown.stdout
        assert shown.stdout.count("running") >= 5
        bad = await run.sandbox("deploy", "canary", "--version", "6.0.2", "--env", "NOPE")
        assert bad.code == 2
        assert "KEY=VALUE" in bad.stderr
    finally:
        down = await run.sandbox("down")
    assert down.code == 0, down.stderr
    assert not [name for name, h in latest.items() if processes.alive(h)]
    assert not (root / "env").exists()
    assert (await run.sandbox("status")).code == 3


def test_app_cli_refuses_bad_arguments() -> None:
    for args in (["--port", "0"], ["--port", "8080", "--env", "NOPE"], ["--version", "x"]):
        done = subprocess.run(
            [sys.executable, "-m", "sandbox.app", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2, done.stderr


def test_sluice_runs_in_standalone_mode_without_kubernetes(tmp_path: pathlib.Path) -> None:
    layout = stack.Layout(tmp_path)
    ports = stack.choose_ports(free_ports=True, extra=standalone.PORTS)
    services = standalone.sluice_plan(layout, ports, {"SLUICE_LOG_LEVEL": "DEBUG"})
    assert [c.name for c in services] == [
        "sluice-watcher",
        "sluice-analyzer",
        "sluice-traffic-shifter",
        "sluice-webhook-runner",
        "sluice-notifier",
    ]
    for component in services:
        env = component.env
        assert env["SLUICE_MODE"] == "standalone"
        assert env["SLUICE_APISIX_ADMIN_URL"] == f"http://127.0.0.1:{ports['gateway_admin']}"
        assert env["SLUICE_APISIX_ADMIN_KEY_FILE"] == str(tmp_path / "apisix-admin-key")
        assert env["SLUICE_PROMETHEUS_URL"] == f"http://127.0.0.1:{ports['prometheus']}"
        assert env["SLUICE_NATS_URL"] == f"nats://127.0.0.1:{ports['nats']}"
        assert env["SLUICE_LOADTESTER_PORT"] == str(ports["loadtester"])
        assert env["SLUICE_LOG_LEVEL"] == "DEBUG"
        assert "SLUICE_KUBECONFIG" not in env
        assert "HTTP_PROXY" not in env
    assert len(set(ports.values())) == len(ports)

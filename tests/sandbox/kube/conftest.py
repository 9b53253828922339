"""Fixtures: a simulated cluster on a random port, a kubeconfig for it, the real kubectl."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import pathlib
import random
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest
from kubernetes import client, config

from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings

KUBECTL_TIMEOUT = 30.0  # seconds one kubectl invocation may take

SMALL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.sluice.dev"},
    "spec": {
        "group": "test.sluice.dev",
        "names": {
            "kind": "Widget",
            "plural": "widgets",
            "singular": "widget",
            "shortNames": ["wg"],
            "categories": ["all"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {
                                        "type": "string",
                                        "enum": ["red", "blue"],
                                        "default": "red",
                                    },
                                    "interval": {"type": "string", "pattern": "^[0-9]+(m|s)"},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "observed": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def random_settings(**changes: object) -> ClusterSettings:
    """Settings with pod and service networks of their own, so clusters never share IPs."""
    second = random.randint(100, 250)
    settings = ClusterSettings(
        pod_network=ipaddress.IPv4Network(f"127.{second}.0.0/17"),
        service_network=ipaddress.IPv4Network(f"127.{second}.128.0/17"),
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


@pytest.fixture
def cluster_settings() -> ClusterSettings:
    return random_settings()


@pytest.fixture
async def bare() -> AsyncIterator[Cluster]:
    """A cluster without controllers, quick bookmarks, and only the test's own CRDs."""
    settings = random_settings(bookmark_interval=0.2, crd_dir=pathlib.Path("/nonexistent"))
    async with Cluster(settings, controllers=False) as cluster:
        yield cluster


@pytest.fixture
async def http(bare: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=bare.url, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session


@pytest.fixture
async def cluster(cluster_settings: ClusterSettings) -> AsyncIterator[Cluster]:
    async with Cluster(cluster_settings) as running:
        yield running


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: pathlib.Path) -> pathlib.Path:
    return cluster.write_kubeconfig(tmp_path / "kubeconfig")


@dataclasses.dataclass
class Result:
    code: int
    stdout: str
    stderr: str


Kubectl = Callable[..., Awaitable[Result]]


@pytest.fixture
def kubectl(kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> Kubectl:
    """``await kubectl("get", "pods", check=True, stdin="...")``: the real kubectl binary."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail(
            "kubectl is not on PATH: the sandbox suite tests the real client; install it "
            "with `make setup`"
        )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(tmp_path / "kubecache"),
    }

    async def run(*args: str, stdin: str | None = None, check: bool = True) -> Result:
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), KUBECTL_TIMEOUT
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        result = Result(proc.returncode or 0, out.decode(), err.decode())
        if check and result.code != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.code}):\n{result.stderr}"
            )
        return result

    run.env = env  # type: ignore[attr-defined]
    run.binary = binary  # type: ignore[attr-defined]
    return run


@pytest.fixture
def core(kubeconfig: pathlib.Path) -> Iterator[client.CoreV1Api]:
    """The official client's CoreV1Api against the cluster."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()

"""Fixtures of the gateway suite: the real Kubernetes simulator, a REST client for it, and
(imported, since only the root conftest may use ``pytest_plugins``) the Prometheus fixtures."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.kube.cluster import Cluster
from tests.fixtures.prometheus import prometheus, prometheus_factory  # noqa: F401 - fixtures
from tests.sandbox.gateway.support import KubeApi

NAMESPACE = "test"


async def start_cluster(c: Cluster) -> None:
    with warnings.catch_warnings():
        # The simulator (in progress) passes shutdown_timeout to TCPSite, deprecated in aiohttp
        # 3.9+; tolerated here until it moves to the runner.
        warnings.filterwarnings(
            "ignore", "shutdown_timeout should be set on BaseRunner", DeprecationWarning
        )
        await c.start()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    # Without the simulator's controllers: the tests write Endpoints themselves, pointing at
    # backends they start, and nothing else must rewrite them.
    c = Cluster(controllers=False)
    await start_cluster(c)
    try:
        yield c
    finally:
        with contextlib.suppress(Exception):
            await c.stop()


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeApi]:
    async with aiohttp.ClientSession() as session:
        api = KubeApi(cluster.url, session)
        await api.ensure_namespace(NAMESPACE)
        yield api

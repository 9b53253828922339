"""The name proxy suite shares the gateway suite's simulator fixtures."""

from tests.sandbox.gateway.conftest import cluster, kube  # noqa: F401 - fixtures

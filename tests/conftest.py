"""Test-wide fixtures: real nats-server, real Prometheus, Sluice services as subprocesses."""

pytest_plugins = [
    "tests.fixtures.nats",
    "tests.fixtures.prometheus",
    "tests.fixtures.services",
]

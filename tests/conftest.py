"""Test-wide fixtures: real nats-server, real Prometheus, Sluice services as subprocesses,
and a guard that fails any async test leaving asyncio tasks behind."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest

pytest_plugins = [
    "tests.fixtures.nats",
    "tests.fixtures.prometheus",
    "tests.fixtures.runtime",
    "tests.fixtures.services",
    "tests.fixtures.sinks",
]

LEAK_GRACE_S = 1.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No secret a test gave a service may appear in any service's log or in any message
    recorded off the bus, in any test."""
    from tests.fixtures import services

    leaks = services.leaked_secrets()
    if leaks:
        print("\nsecrets found in service logs or bus messages:\n  " + "\n  ".join(leaks))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            # first fixture set up, so it is the last torn down: it sees what the rest left
            item.fixturenames.insert(0, "no_leaked_tasks")


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    deadline = asyncio.get_running_loop().time() + LEAK_GRACE_S
    while True:
        leaked = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}
        leaked = {t for t in leaked if not t.done()}
        if not leaked or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    for task in leaked:
        task.cancel()
    assert not leaked, (
        f"the test left asyncio tasks running: {sorted(t.get_name() for t in leaked)}"
    )

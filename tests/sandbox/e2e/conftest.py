"""A running sandbox stack (``python -m sandbox up``) shared by the tests of a module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client

from tests.fixtures import services
from tests.sandbox.e2e import support


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    """Started and stopped with blocking subprocess calls: the stack lives in other processes,
    so this module-scoped fixture needs no event loop; teardown checks nothing is left running."""
    running = support.start_stack_blocking(tmp_path_factory.mktemp("stack"))
    # the stack's services log there, and what they say on the bus is recorded: both are
    # searched for the tests' secrets when the session ends (tests/conftest.py)
    services.watch_logs(running.root / "logs")
    recorder = support.BusRecorder(running.env["NATS_URL"])
    try:
        recorder.start()
        yield running
    finally:
        try:
            recorder.stop()
        finally:
            support.stop_stack_blocking(running)


@pytest.fixture
async def stack_nc(stack: support.Stack) -> AsyncIterator[Client]:
    """A plain nats-py client on the stack's NATS (what a custom integration uses)."""
    client = await nats.connect(stack.env["NATS_URL"])
    try:
        yield client
    finally:
        await client.close()

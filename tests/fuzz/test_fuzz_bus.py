"""No exception type may escape a consumer or a command handler.

One fuzz run (``COUNT`` examples per consumed subject, from ``tests.fuzz.strategies``) through
a real nats-server and the four consuming services as processes; each invariant of
``harness.INVARIANTS`` is its own test, so a failure names what broke. The same harness runs
at scale with ``make fuzz`` (``python -m tests.fuzz``).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fuzz import harness

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(240)]

COUNT = 120  # per subject: about 720 messages, well under a minute on two cores


@pytest.fixture(scope="module")
def fuzz_report(tmp_path_factory: pytest.TempPathFactory) -> harness.FuzzReport:
    config = harness.FuzzConfig(workdir=tmp_path_factory.mktemp("fuzz"), count=COUNT)
    report = asyncio.run(harness.run(config))
    (config.workdir / "report.json").write_text(report.to_json())
    return report


@pytest.mark.parametrize("invariant", [name for name, _ in harness.INVARIANTS])
def test_no_exception_escapes_the_bus(fuzz_report: harness.FuzzReport, invariant: str) -> None:
    check = fuzz_report.check_named(invariant)
    assert check.ok, (
        f"{check.description}:\n  "
        + "\n  ".join(check.details)
        + "\n\n"
        + harness.render_table(fuzz_report)
        + "\n\n"
        + harness.render_services(fuzz_report)
    )

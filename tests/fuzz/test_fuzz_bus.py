"""No exception type may escape a consumer or a command handler.

One fuzz run (``COUNT`` examples per consumed subject, from ``tests.fuzz.strategies``) through
a real nats-server and the four consuming services as processes; each invariant of
``invariants.INVARIANTS`` is its own test, so a failure names what broke. A second, smaller run
happens on a sandbox stack with two canaries in flight (one promoted, one rolled back), which
must end as they should. The same harness runs at scale with ``make fuzz``
(``python -m tests.fuzz``, ``--with-rollouts``).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fuzz import harness, invariants, model, rendering, rollouts

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(240)]

COUNT = 120  # per subject: about 720 messages, well under a minute on two cores


@pytest.fixture(scope="module")
def fuzz_report(tmp_path_factory: pytest.TempPathFactory) -> model.FuzzReport:
    config = model.FuzzConfig(workdir=tmp_path_factory.mktemp("fuzz"), count=COUNT)
    report = asyncio.run(harness.run(config))
    (config.workdir / "report.json").write_text(report.to_json())
    return report


@pytest.mark.parametrize("invariant", [name for name, _ in invariants.INVARIANTS])
def test_no_exception_escapes_the_bus(fuzz_report: model.FuzzReport, invariant: str) -> None:
    check = fuzz_report.check_named(invariant)
    assert check.ok, (
        f"{check.description}:\n  "
        + "\n  ".join(check.details)
        + "\n\n"
        + rendering.render_table(fuzz_report)
        + "\n\n"
        + rendering.render_services(fuzz_report)
    )


ROLLOUT_COUNT = 60  # per subject, while two canaries roll out on a sandbox stack


@pytest.fixture(scope="module")
def rollouts_report(tmp_path_factory: pytest.TempPathFactory) -> model.FuzzReport:
    config = model.FuzzConfig(
        workdir=tmp_path_factory.mktemp("fuzz-rollouts"), count=ROLLOUT_COUNT, rollouts=2
    )
    report = asyncio.run(harness.run(config))
    (config.workdir / "report.json").write_text(report.to_json())
    return report


@pytest.mark.parametrize(
    "invariant",
    [name for name, _ in invariants.INVARIANTS] + [invariants.ROLLOUTS_INVARIANT[0]],
)
def test_canaries_in_flight_end_correctly_while_the_bus_is_fuzzed(
    rollouts_report: model.FuzzReport, invariant: str
) -> None:
    check = rollouts_report.check_named(invariant)
    assert check.ok, (
        f"{check.description}:\n  "
        + "\n  ".join(check.details)
        + "\n\n"
        + rendering.render_table(rollouts_report)
        + "\n\n"
        + rollouts.render(rollouts_report.rollouts)
    )

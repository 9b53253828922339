"""The chaos runner in CI: two seeded runs of the seed rollout under every kind of fault, and
the fault schedule's promise that a seed replays exactly."""

from __future__ import annotations

import asyncio
import io
import pathlib

import pytest

from tests.chaos import __main__ as chaos
from tests.chaos import schedule

SEED = 6  # runs 6 and 7: every kind of fault, both Kubernetes API faults, a stopped Prometheus


def test_a_seed_replays_the_same_schedule_with_every_kind_of_fault() -> None:
    assert schedule.plan(SEED) == schedule.plan(SEED)
    assert schedule.plan(SEED) != schedule.plan(SEED + 1)
    for seed in range(50):
        faults = schedule.plan(seed)
        assert sorted(f.kind for f in faults) == sorted(schedule.KINDS)
        assert all(0 < f.at_s <= schedule.LATEST_S[f.phase] for f in faults)


def test_a_bad_run_count_names_the_option() -> None:
    with pytest.raises(SystemExit):
        chaos.parse(["--runs", "0"])


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_two_seeded_chaos_runs_pass(tmp_path: pathlib.Path) -> None:
    out = io.StringIO()
    results = asyncio.run(chaos.session(2, SEED, tmp_path, out))
    assert [r.seed for r in results] == [SEED, SEED + 1]
    assert all(r.ok for r in results), out.getvalue() + "\n" + chaos.report(results)

"""``sluice watch``: the decision and the rendering on their own, then the command as a process
against a real nats-server whose KV entries and events the test writes itself."""

from __future__ import annotations

import asyncio
import io
import os
import pathlib
import signal
import sys
from typing import Any

import pytest
from nats.aio.client import Client
from rich.console import Console

from cli import connecting, events, main, watching, watchview
from libs import messages, streams
from libs.model import canary as canary_model
from tests.cli.seed import canary
from tests.fixtures.nats import NatsServer

REPO = pathlib.Path(__file__).resolve().parents[2]
Phase = canary_model.Phase
WHO = "podinfo.test"


def observation(
    status: dict[str, Any] | None = None, **analysis: Any
) -> messages.CanaryObservation:
    return messages.CanaryObservation(
        namespace="test",
        name="podinfo",
        uid="uid-1",
        resource_version="1",
        generation=1,
        canary=canary(status, **analysis),
    )


def workload(revision: str, **configs: str) -> messages.WorkloadObservation:
    return messages.WorkloadObservation(
        namespace="test",
        name="podinfo",
        revision=revision,
        generation=1,
        observed_generation=1,
        replicas=1,
        tracked_configs=configs,
    )


def status(
    phase: str, applied: str = "rev1", promoted: str = "rev1", **more: Any
) -> dict[str, Any]:
    return {"phase": phase, "lastAppliedSpec": applied, "lastPromotedSpec": promoted, **more}


# --------------------------------------------------------------------------- the decision


RUNNING = [
    Phase.UNSET,
    Phase.INITIALIZING,
    Phase.WAITING,
    Phase.PROGRESSING,
    Phase.WAITING_PROMOTION,
    Phase.PROMOTING,
    Phase.FINALISING,
]


@pytest.mark.parametrize("phase", RUNNING)
@pytest.mark.parametrize("revision", ["rev1", "rev2", None])
def test_a_rollout_under_way_is_never_over(phase: Phase, revision: str | None) -> None:
    seen = workload(revision) if revision else None
    decision = watchview.verdict(WHO, observation(status(phase, "rev2", "rev1")), seen)
    assert not decision.over


@pytest.mark.parametrize(
    ("phase", "applied", "promoted", "revision", "over", "exit_status"),
    [
        # the previous rollout's outcome while the new revision is not yet picked up
        (Phase.SUCCEEDED, "rev1", "rev1", "rev2", False, None),
        (Phase.INITIALIZED, "rev1", "rev1", "rev2", False, None),
        (Phase.FAILED, "rev1", "rev0", "rev2", False, None),
        # over: the target is what was promoted / applied
        (Phase.SUCCEEDED, "rev2", "rev2", "rev2", True, watching.EXIT_OK),
        (Phase.INITIALIZED, "rev1", "rev1", "rev1", True, watching.EXIT_OK),
        (Phase.FAILED, "rev2", "rev1", "rev2", True, watching.EXIT_FAILED),
        # failed, then the target was set back to the promoted revision: nothing to roll out
        (Phase.FAILED, "rev2", "rev1", "rev1", True, watching.EXIT_FAILED),
        # no observation of the target: the phase decides
        (Phase.SUCCEEDED, "rev1", "rev1", None, True, watching.EXIT_OK),
        (Phase.FAILED, "rev1", "rev0", None, True, watching.EXIT_FAILED),
        # never applied: a rollout is coming
        (Phase.SUCCEEDED, "", "", "rev1", False, None),
    ],
)
def test_finished_phases_are_over_only_without_a_pending_revision(
    phase: Phase,
    applied: str,
    promoted: str,
    revision: str | None,
    over: bool,
    exit_status: int | None,
) -> None:
    seen = workload(revision) if revision else None
    decision = watchview.verdict(WHO, observation(status(phase, applied, promoted)), seen)
    assert decision.over is over
    if over:
        assert decision.status == exit_status
        assert decision.message.startswith(f"{WHO} {phase}")
    else:
        assert f"new revision {revision} pending" in decision.message


def test_a_changed_tracked_config_is_a_pending_rollout() -> None:
    done = status(Phase.SUCCEEDED, "rev1", "rev1", trackedConfigs={"configmap/cfg": "a"})
    assert watchview.verdict(
        WHO, observation(done), workload("rev1", **{"configmap/cfg": "a"})
    ).over
    pending = watchview.verdict(WHO, observation(done), workload("rev1", **{"configmap/cfg": "b"}))
    assert not pending.over


@pytest.mark.parametrize("phase", [Phase.TERMINATING, Phase.TERMINATED])
def test_a_deleted_canary_ends_the_watch_with_1(phase: Phase) -> None:
    decision = watchview.verdict(WHO, observation(status(phase)), workload("rev9"))
    assert decision == watchview.Verdict(True, watching.EXIT_FAILED, f"{WHO} was deleted")


def test_missing_and_invalid_canaries() -> None:
    assert not watchview.verdict(WHO, None, None).over
    invalid = messages.CanaryObservation(
        namespace="test",
        name="podinfo",
        uid="u",
        resource_version="1",
        generation=1,
        problems=["spec.analysis.interval: expected a duration"],
    )
    decision = watchview.verdict(WHO, invalid, None)
    assert decision.over
    assert decision.status == watching.EXIT_FAILED
    assert "spec.analysis.interval" in decision.message


def test_every_phase_is_decided() -> None:
    over = {
        p for p in Phase if watchview.verdict(WHO, observation(status(p)), workload("rev1")).over
    }
    assert over == {
        Phase.SUCCEEDED,
        Phase.INITIALIZED,
        Phase.FAILED,
        Phase.TERMINATING,
        Phase.TERMINATED,
    }


# --------------------------------------------------------------------------- rendering

PROGRESSING = status(
    Phase.PROGRESSING,
    "rev2",
    "rev1",
    canaryWeight=20,
    failedChecks=1,
    metrics=[
        {"name": "request-success-rate", "value": 99.5, "min": 99, "passed": True},
        {"name": "request-duration", "value": 612.25, "max": 500, "passed": False},
    ],
)


def frame(
    obs: messages.CanaryObservation | None, seen: messages.WorkloadObservation | None = None
) -> watchview.Frame:
    metrics: dict[str, watchview.MetricView] = {}
    if obs is not None and obs.canary is not None and obs.canary.status is not None:
        metrics = watchview.metrics_of(obs.canary.status)
    return watchview.frame_of(WHO, obs, seen, metrics)


def test_plain_line_of_a_weighted_canary() -> None:
    line = watchview.plain_line(frame(observation(PROGRESSING)), 0)
    assert line == (
        f"{watchview.clock(0)}  podinfo.test  Progressing  weight 20/50  failed checks 1/10  "
        "request-duration 612.25 (<= 500) failed  request-success-rate 99.5 (>= 99)"
    )
    assert "\x1b" not in line


def test_plain_line_of_blue_green_waiting_at_a_gate() -> None:
    waiting = status(
        Phase.WAITING_PROMOTION,
        "rev2",
        "rev1",
        iterations=10,
        conditions=[
            {"type": "Gate", "status": "False", "reason": "confirm-promotion", "message": "m"}
        ],
    )
    shown = frame(observation(waiting, iterations=10, maxWeight=None, stepWeight=None))
    line = watchview.plain_line(shown, 0)
    assert "WaitingPromotion  iteration 10/10  failed checks 0/10" in line
    assert line.endswith("waiting at confirm-promotion")


def test_plain_lines_of_pending_missing_and_invalid_canaries() -> None:
    stale = frame(observation(status(Phase.SUCCEEDED)), workload("rev2abcdef0123456789"))
    assert watchview.plain_line(stale, 0).endswith("new revision rev2abcdef01 pending")
    assert watchview.plain_line(frame(None), 0).endswith("podinfo.test: not found yet")


def test_a_frame_changes_its_key_only_with_what_is_worth_a_line() -> None:
    first = frame(observation(PROGRESSING))
    again = frame(observation({**PROGRESSING, "failedChecks": 2}))
    further = frame(observation({**PROGRESSING, "canaryWeight": 30}))
    assert first.key() == again.key()
    assert first.key() != further.key()


def test_metric_checked_events_are_values_not_lines() -> None:
    ref = messages.CanaryRef(namespace="test", name="podinfo")
    metric = messages.MetricChecked(canary=ref, metric="m", value=1.5, max=2, passed=True, at_ms=0)
    assert watchview.event_line(metric) is None
    assert watchview.metric_of(metric) == watchview.MetricView("m", 1.5, None, 2, True, False)
    advanced = messages.WeightAdvanced(
        canary=ref,
        message="Advance podinfo.test canary weight 10",
        canary_weight=10,
        primary_weight=90,
        at_ms=0,
    )
    assert watchview.event_line(advanced) == (
        f"{watchview.clock(0)}  Advance podinfo.test canary weight 10"
    )


def test_plain_view_prints_one_line_per_change_and_per_event() -> None:
    out = io.StringIO()
    view = watchview.PlainView(out)
    view.show(frame(observation(PROGRESSING)), [], 0)
    view.show(frame(observation(PROGRESSING)), ["00:00:01  an event"], 0)
    view.show(frame(observation({**PROGRESSING, "canaryWeight": 30})), [], 0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1] == "00:00:01  an event"
    assert "weight 30/50" in lines[2]


def test_the_terminal_view_shows_progress_metrics_gate_and_events() -> None:
    waiting = {
        **PROGRESSING,
        "conditions": [{"type": "Gate", "status": "False", "reason": "confirm-traffic-increase"}],
    }
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(watchview.render(frame(observation(waiting)), ["10:00:00  New revision"]))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for expected in (
        "podinfo.test",
        "Progressing",
        "weight 20/50",
        "1/10",
        "confirm-traffic-increase",
        "request-duration",
        "612.25",
        "<= 500",
        "failed",
        "10:00:00  New revision",
    ):
        assert expected in text


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("90s", 90), ("1h", 3600)])
def test_timeouts_are_go_durations(text: str, seconds: float) -> None:
    assert events.parse_duration(text, "--timeout") == seconds


@pytest.mark.parametrize("text", ["10", "ten minutes", "-5s", ""])
def test_bad_timeouts_name_the_option(text: str) -> None:
    with pytest.raises(connecting.CliError, match="--timeout: expected a duration"):
        events.parse_duration(text, "--timeout")


def test_a_bad_timeout_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["watch", "podinfo", "-n", "test", "--timeout", "soon"]) == 1
    assert "--timeout: expected a duration" in capsys.readouterr().err


# --------------------------------------------------------------------------- the command


async def _declare(nc: Client) -> None:
    await streams.declare(
        nc.jetstream(), streams=(streams.EVENTS,), buckets=(streams.CANARIES, streams.WORKLOADS)
    )


async def put_canary(nc: Client, status_: dict[str, Any]) -> None:
    kv = await nc.jetstream().key_value(streams.CANARIES.name)
    await kv.put(
        messages.canary_key("test", "podinfo"), messages.ENCODER.encode(observation(status_))
    )


async def put_workload(nc: Client, revision: str) -> None:
    kv = await nc.jetstream().key_value(streams.WORKLOADS.name)
    await kv.put(
        messages.workload_key("test", "podinfo"), messages.ENCODER.encode(workload(revision))
    )


async def publish(nc: Client, event: messages.EventBase) -> None:
    subject = messages.event_subject("test", "podinfo", messages.event_kind(event))
    await nc.jetstream().publish(subject, messages.ENCODER.encode(event))


async def start_watch(server: NatsServer, *more: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "SLUICE_NATS_URL")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "watch", "podinfo", "-n", "test",
        "--nats-url", server.url, "--grace", "0.3", *more,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def read_until(proc: asyncio.subprocess.Process, needle: str, seen: list[str]) -> None:
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
        if not line:
            raise AssertionError(f"watch ended before printing {needle!r}:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return


async def finish(proc: asyncio.subprocess.Process, seen: list[str]) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode is not None
    return proc.returncode, "".join(seen) + out.decode(), err.decode()


REF = messages.CanaryRef(namespace="test", name="podinfo")


@pytest.mark.integration
async def test_watch_waits_past_a_stale_success_then_exits_0(
    nats_server: NatsServer, nc: Client
) -> None:
    await _declare(nc)
    await put_workload(nc, "rev2")
    await put_canary(nc, status(Phase.SUCCEEDED, "rev1", "rev1"))
    proc = await start_watch(nats_server, "--timeout", "1m")
    seen: list[str] = []
    await read_until(proc, "new revision rev2 pending", seen)
    await publish(
        nc,
        messages.NewRevision(canary=REF, message="New revision detected! Scaling up podinfo.test"),
    )
    await publish(nc, messages.MetricChecked(canary=REF, metric="request-success-rate", value=99.5, min=99, passed=True))  # fmt: skip
    await put_canary(nc, status(Phase.PROGRESSING, "rev2", "rev1", canaryWeight=10))
    await read_until(proc, "Progressing  weight 10/50", seen)  # it did not stop at the stale one
    await publish(
        nc,
        messages.PromotionCompleted(
            canary=REF, message="Promotion completed! Scaling down podinfo.test"
        ),
    )
    await put_canary(nc, status(Phase.SUCCEEDED, "rev2", "rev2"))
    code, out, err = await finish(proc, seen)
    assert code == 0, err
    assert "New revision detected! Scaling up podinfo.test" in out
    assert "Promotion completed! Scaling down podinfo.test" in out
    assert "request-success-rate 99.5 (>= 99)" in out
    assert "podinfo.test Succeeded: revision rev2 promoted" in out
    assert "\x1b" not in out  # not a terminal: plain lines


@pytest.mark.integration
async def test_watch_exits_1_when_the_rollout_failed(nats_server: NatsServer, nc: Client) -> None:
    await _declare(nc)
    await put_workload(nc, "rev2")
    await put_canary(nc, status(Phase.FAILED, "rev2", "rev1", failedChecks=10))
    code, _, err = await finish(await start_watch(nats_server), [])
    assert code == 1
    assert "podinfo.test Failed: rolled back" in err


@pytest.mark.integration
async def test_watch_exits_2_on_timeout(nats_server: NatsServer, nc: Client) -> None:
    await _declare(nc)
    await put_workload(nc, "rev2")
    await put_canary(nc, status(Phase.PROGRESSING, "rev2", "rev1", canaryWeight=20))
    code, out, err = await finish(await start_watch(nats_server, "--timeout", "1s"), [])
    assert code == 2
    assert "timed out after 1s: podinfo.test is Progressing" in err
    assert "Progressing  weight 20/50" in out


@pytest.mark.integration
async def test_watch_of_a_missing_canary_says_what_to_check(
    nats_server: NatsServer, nc: Client
) -> None:
    await _declare(nc)
    code, _, err = await finish(await start_watch(nats_server), [])
    assert code == 1
    assert "canary podinfo.test not found (is it applied? is the watcher running?)" in err


@pytest.mark.integration
async def test_watch_of_a_deleted_canary_exits_1(nats_server: NatsServer, nc: Client) -> None:
    await _declare(nc)
    await put_canary(nc, status(Phase.TERMINATING))
    code, _, err = await finish(await start_watch(nats_server), [])
    assert code == 1
    assert "podinfo.test was deleted" in err


@pytest.mark.integration
async def test_watch_stops_on_ctrl_c(nats_server: NatsServer, nc: Client) -> None:
    await _declare(nc)
    await put_canary(nc, status(Phase.PROGRESSING, "rev2", "rev1"))
    proc = await start_watch(nats_server)
    seen: list[str] = []
    await read_until(proc, "Progressing", seen)
    proc.send_signal(signal.SIGINT)
    code, _, _ = await finish(proc, seen)
    assert code == watching.EXIT_INTERRUPTED

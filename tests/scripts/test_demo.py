"""``make demo``: the pure parts (what is shown, the verdicts, the summary) fast, and the whole
demo once, as a subprocess without a TTY, as CI and pipes run it."""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import threading

import aiohttp
import pytest

from libs import messages
from sandbox import control, processes, stack
from scripts.demo import chat, cli, cluster, display, outcome, snapshot, tutorial

REPO = pathlib.Path(__file__).resolve().parents[2]
REF = messages.CanaryRef(namespace="test", name="podinfo")
GOOD = outcome.Container(tutorial.GOOD_IMAGE, {"PODINFO_UI_COLOR": "#34577c"})
FAULTY = outcome.Container(
    tutorial.FAULTY_IMAGE, {"PODINFO_UI_COLOR": "#34577c", "SANDBOX_ERROR_RATE": "0.5"}
)
CANARY_OBJECT = {
    "spec": {
        "analysis": {
            "maxWeight": 50,
            "threshold": 10,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                {"name": "request-duration", "thresholdRange": {"max": 500}},
            ],
        }
    },
    "status": {"phase": "Progressing", "canaryWeight": 30, "failedChecks": 1},
}


def board_at(started: float = 1000.0) -> tuple[snapshot.Board, list[str]]:
    lines: list[str] = []
    return snapshot.Board(started=started, out=lines.append), lines


def metric(name: str, value: float | None, passed: bool, **limits: float) -> messages.MetricChecked:
    return messages.MetricChecked(canary=REF, metric=name, value=value, passed=passed, **limits)


def slack_body(text: str, colour: str = "good", fields: tuple[tuple[str, str], ...] = ()) -> dict:
    return {
        "channel": "general",
        "username": "flagger",
        "attachments": [
            {
                "color": colour,
                "author_name": "podinfo.test",
                "text": text,
                "fields": [{"title": t, "value": v, "short": False} for t, v in fields],
            }
        ],
    }


# ----------------------------------------------------------------------------- what is shown


def test_a_snapshot_renders_weight_phase_metrics_events_and_slack() -> None:
    board, _ = board_at()
    board.set_stage("rollout 1 of 2: a good revision (podinfo:6.0.1)")
    board.canary(CANARY_OBJECT, now=1010.0)
    board.event(metric("request-success-rate", 99.5, True, min=99), now=1020.0)
    board.event(
        messages.WeightAdvanced(
            canary=REF,
            message="Advance podinfo.test canary weight 30",
            canary_weight=30,
            primary_weight=70,
        ),
        now=1021.0,
    )
    board.chat(slack_body("New revision detected! Scaling up podinfo.test"), now=1022.0)

    text = display.render_text(board, width=110, now=1083.0)

    assert "rollout 1 of 2: a good revision (podinfo:6.0.1)" in text
    assert "30/50%" in text
    assert "Progressing" in text
    assert "failed checks 1/10" in text
    assert "request-success-rate" in text
    assert "99.50%" in text
    assert "≥ 99%" in text
    assert "request-duration" in text
    assert "not measured yet" in text
    assert "≤ 500ms" in text
    assert " 0:21 Normal  Advance podinfo.test canary weight 30" in text
    assert "New revision detected! Scaling up podinfo.test" in text
    assert "Slack · 1 message" in text
    assert "1:23 elapsed" in text


def test_only_the_newest_entries_are_shown_with_a_count_of_the_rest() -> None:
    board, _ = board_at()
    for i in range(display.SHOWN_EVENTS + 3):
        board.event(
            messages.Halted(
                canary=REF,
                severity=messages.Severity.WARN,
                message=f"Halt podinfo.test advancement success rate {90 + i / 10:.2f}% < 99%",
                reason="success rate",
                failed_checks=i + 1,
            )
        )
    text = display.render_text(board, width=110)
    # the panel's rows include the "earlier" line
    assert "… 4 earlier" in text
    assert "90.30%" not in text
    assert "90.40% < 99%" in text
    assert f"{90 + (display.SHOWN_EVENTS + 2) / 10:.2f}% < 99%" in text
    assert board.failed_checks == display.SHOWN_EVENTS + 3


def test_fewer_entries_than_rows_are_all_shown() -> None:
    board, _ = board_at()
    for i in range(5):
        board.chat(slack_body(f"message {i}"), now=board.started + i)
    text = display.render_text(board, width=80, height=40)
    assert all(f"0:0{i} message {i}" in text for i in range(5))
    assert "earlier" not in text


def test_the_weight_bar_reads_without_colours() -> None:
    assert display.weight_bar(20, 50, width=10).plain == "━━━━──────"
    assert display.weight_bar(0, 50, width=10).plain == "─" * 10
    assert display.weight_bar(70, 50, width=10).plain == "━" * 10


@pytest.mark.parametrize("height", [24, 40, 60])
def test_the_live_view_fits_the_terminal(height: int) -> None:
    board, _ = board_at()
    board.canary(CANARY_OBJECT)
    for i in range(40):
        at = board.started + i
        board.action(f"step {i} " + "x" * 200, now=at)  # long lines are cut, never wrapped
        board.chat(slack_body(f"message {i}"), now=at)
        board.event(
            messages.WeightAdvanced(
                canary=REF, message=f"Advance {i}", canary_weight=10, primary_weight=90
            ),
            now=at,
        )
    text = display.render_text(board, width=80, height=height, now=board.started + 754)
    assert len(text.splitlines()) <= height
    assert "12:34 elapsed" in text
    assert " 0:39 step 39 xxx" in text  # the time column keeps its width
    assert " 0:39 Normal  Advance 39" in text
    assert "failed checks 1/10" in text
    assert "step 39" in text
    assert "message 39" in text
    assert "Advance 39" in text


def test_events_update_the_board_and_print_plain_lines() -> None:
    board, lines = board_at(started=100.0)
    board.event(
        messages.PhaseChanged(canary=REF, previous="Succeeded", phase="Progressing"), now=101.5
    )
    board.event(metric("request-success-rate", None, False, min=99), now=111.0)
    board.event(metric("request-duration", 4.5, True, max=500), now=111.0)
    board.event(
        messages.RevisionDetected(canary=REF, message="revision abc of podinfo.test"), now=112.0
    )
    board.event(
        messages.RolledBack(
            canary=REF,
            severity=messages.Severity.WARN,
            message="Rolling back podinfo.test failed checks threshold reached 10",
            reason="failed checks threshold reached 10",
        ),
        now=200.0,
    )

    assert board.phase == "Progressing"
    assert board.metrics["request-success-rate"].measured
    assert board.metrics["request-success-rate"].value is None
    assert lines == [
        "[   1.5s] phase   Progressing",
        "[  11.0s] metric  request-success-rate no values (≥ 99%) FAILS",
        "[  11.0s] metric  request-duration 4.50ms (≤ 500ms) ok",
        "[ 100.0s] event   Warning  Rolling back podinfo.test failed checks threshold reached 10",
    ]
    # the watcher's hint and the measurements are not Kubernetes Events; the rollback is
    assert [e.text for e in board.events] == [
        "Rolling back podinfo.test failed checks threshold reached 10"
    ]


def test_the_described_events_are_the_ones_the_notifier_records() -> None:
    from services.notifier import kubeevents

    assert snapshot.NOT_DESCRIBED == kubeevents.NOT_RECORDED


def test_the_canary_object_sets_limits_thresholds_and_status() -> None:
    board, lines = board_at()
    board.canary(CANARY_OBJECT)
    assert (board.max_weight, board.threshold) == (50, 10)
    assert (board.weight, board.failed_checks, board.phase) == (30, 1, "Progressing")
    assert snapshot.threshold_text(board.metrics["request-success-rate"]) == "≥ 99%"
    assert snapshot.threshold_text(board.metrics["request-duration"]) == "≤ 500ms"
    board.canary(CANARY_OBJECT)
    assert len([line for line in lines if "phase" in line]) == 1  # printed once per change


def test_slack_messages_are_read_from_flaggers_payload() -> None:
    text, colour = chat.slack_text(
        slack_body(
            "Rolling back podinfo.test &lt;threshold&gt; &amp; more",
            "danger",
            (("Reason", "failed checks threshold reached 10"), ("Target", "Deployment/podinfo")),
        )
    )
    assert text == (
        "Rolling back podinfo.test <threshold> & more · Reason: failed checks threshold reached 10"
    )
    assert colour == "danger"
    assert chat.slack_text({"text": "not slack"}) == ('{"text": "not slack"}', "")


# ----------------------------------------------------------------------------- outcomes


def test_a_promotion_needs_succeeded_and_the_good_image_on_the_primary() -> None:
    ok = outcome.judge_promotion("Succeeded", GOOD)
    assert ok.ok
    assert ok.line.startswith("promoted: rollout 1 ended Succeeded")

    failed = outcome.judge_promotion(
        "Failed", outcome.Container("ghcr.io/stefanprodan/podinfo:6.0.0", {})
    )
    assert not failed.ok
    assert failed.line == (
        "rollout 1 (good revision): expected phase Succeeded with podinfo-primary running "
        "ghcr.io/stefanprodan/podinfo:6.0.1; got phase Failed with podinfo-primary running "
        "ghcr.io/stefanprodan/podinfo:6.0.0"
    )
    assert not outcome.judge_promotion("Succeeded", FAULTY).ok


def test_a_rollback_needs_failed_and_the_primary_unchanged() -> None:
    ok = outcome.judge_rollback("Failed", GOOD, GOOD)
    assert ok.ok
    assert ok.line == (
        "rolled back: rollout 2 ended Failed; podinfo-primary still runs "
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    )
    promoted = outcome.judge_rollback("Succeeded", GOOD, FAULTY)
    assert not promoted.ok
    assert promoted.line == (
        "rollout 2 (faulty revision): expected phase Failed with podinfo-primary unchanged "
        "(ghcr.io/stefanprodan/podinfo:6.0.1); got phase Succeeded with podinfo-primary running "
        "ghcr.io/stefanprodan/podinfo:6.0.2 with SANDBOX_ERROR_RATE=0.5"
    )
    assert not outcome.judge_rollback("Failed", GOOD, FAULTY).ok


def test_the_primary_container_is_read_from_the_deployment() -> None:
    deployment = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "other"},
                        {
                            "name": "podinfod",
                            "image": tutorial.FAULTY_IMAGE,
                            "env": [{"name": "SANDBOX_ERROR_RATE", "value": "0.5"}],
                        },
                    ]
                }
            }
        }
    }
    assert outcome.Container.of(deployment) == outcome.Container(
        tutorial.FAULTY_IMAGE, {"SANDBOX_ERROR_RATE": "0.5"}
    )
    assert outcome.Container.of({}) == outcome.Container("", {})


def test_the_summary_says_what_happened_how_long_it_took_and_the_latency() -> None:
    report = outcome.Report(
        verdicts=[
            outcome.judge_promotion("Succeeded", GOOD),
            outcome.judge_rollback("Failed", GOOD, GOOD),
        ],
        timings={"sandbox up": 7.3, "rollout 1": 91.0},
        revision_latency_s=0.093,
        slack_messages=5,
        wall_s=237.4,
    )
    assert report.ok
    lines = outcome.summary(report)
    assert lines[0].startswith("promoted: ")
    assert lines[1].startswith("rolled back: ")
    assert "wall time: 3m57s (sandbox up 7.3s, rollout 1 1m31s)" in lines
    assert 'kubectl set image → "New revision detected" on the bus: 0.09s' in lines
    assert lines[-1] == "demo passed"

    report.failure = "rollout 2: expected the canary to end Failed within 180s; ..."
    assert not report.ok
    lines = outcome.summary(report)
    assert f"FAILED: {report.failure}" in lines
    assert lines[-1] == "demo FAILED"
    assert not outcome.Report(verdicts=[outcome.judge_promotion("Succeeded", GOOD)]).ok


def test_keep_prints_how_to_use_and_stop_the_stack(tmp_path: pathlib.Path) -> None:
    lines = outcome.keep_instructions(tmp_path)
    assert f"  source {tmp_path}/env" in lines
    assert "  kubectl get canaries -n test" in lines
    assert "  kubectl describe canary podinfo -n test" in lines
    assert any("sluice watch podinfo -n test" in line for line in lines)
    assert any(f"-m sandbox --dir {tmp_path} down" in line for line in lines)
    # the third revision undoes the faulty one's error rate in the same change as its image
    patch = json.loads(outcome.third_revision())
    [container] = patch["spec"]["template"]["spec"]["containers"]
    assert container["name"] == tutorial.CONTAINER
    assert container["image"].endswith(":6.0.3")
    assert container["env"] == [{"name": tutorial.FAULT_VARIABLE, "$patch": "delete"}]
    assert any(shlex.quote(outcome.third_revision()) in line for line in lines)


def test_children_do_not_inherit_another_sandbox_or_sluice_settings() -> None:
    env = cluster.child_environment(
        {
            "PATH": "/usr/bin",
            "HOME": "/root",
            "KUBECONFIG": "/elsewhere",
            "KUBECACHEDIR": "/elsewhere/cache",
            "SANDBOX_DIR": "/elsewhere",
            "SLUICE_MIN_INTERVAL_S": "1",
            "HTTP_PROXY": "http://127.0.0.1:3128",
            "no_proxy": "127.0.0.1",
            "NATS_URL": "nats://127.0.0.1:4222",
        }
    )
    assert env == {"PATH": "/usr/bin", "HOME": "/root"}


def test_a_pod_network_whose_pods_listen_is_in_use() -> None:
    network = ipaddress.IPv4Network("127.39.0.0/16")
    assert not cluster.network_in_use(network, probes=4)
    with socket.socket() as pod:
        pod.bind(("127.39.0.4", cluster.POD_PORT))
        pod.listen()
        assert cluster.network_in_use(network, probes=4)
    assert cluster.random_pod_network().subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))


async def test_the_chat_sink_records_what_is_posted() -> None:
    seen: list[object] = []
    sink = chat.ChatSink(seen.append)
    url = await sink.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/slack")
        async with aiohttp.ClientSession() as http, http.post(url, json=slack_body("hi")) as resp:
            assert resp.status == 200
            assert await resp.text() == "ok"
    finally:
        await sink.stop()
    assert sink.payloads == seen == [slack_body("hi")]


def test_a_state_directory_in_use_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state.json").write_text("{}")
    assert cli.main(["--dir", str(tmp_path)]) == 2
    assert "not a new or empty directory" in capsys.readouterr().err


# ----------------------------------------------------------------------------- end to end


class Recorder:
    """Reads the stack's state.json while the demo runs: every process it ever recorded."""

    def __init__(self, root: pathlib.Path) -> None:
        self.layout = stack.Layout(root)
        self.handles: dict[int, tuple[str, processes.Handle]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):  # a polling period
            try:
                state = control.State.load(self.layout)
            except control.StackError:  # caught mid-write
                continue
            for running in state.running if state is not None else ():
                self.handles[running.handle.pid] = (running.name, running.handle)


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_make_demo_promotes_then_rolls_back_and_leaves_nothing_running(
    tmp_path: pathlib.Path,
) -> None:
    root = tmp_path / "demo"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }
    recorder = Recorder(root)
    recorder.thread.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.demo", "--dir", str(root)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=370)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo stops its stack on SIGTERM
        out, _ = proc.communicate(timeout=40)
        pytest.fail(f"the demo did not finish within 370s:\n{out}")
    finally:
        recorder.stop.set()
        recorder.thread.join()
    logs = "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted((root / "logs").glob("*.log"))
    )
    assert proc.returncode == 0, f"{out}\n{logs}"
    assert "promoted: rollout 1 ended Succeeded; podinfo-primary runs " in out
    assert "rolled back: rollout 2 ended Failed; podinfo-primary still runs " in out
    assert "demo passed" in out
    # no TTY: plain lines, one per change
    assert "event   Normal   Initialization done! podinfo.test" in out
    assert "slack   " in out
    assert 'kubectl set image → "New revision detected" on the bus: ' in out
    assert "\x1b[" not in out  # no terminal control sequences
    # everything the demo started is gone, and so is the state it was recorded in
    assert len(recorder.handles) >= 10, recorder.handles  # 5 stack processes + 5 services
    left = [name for name, handle in recorder.handles.values() if processes.alive(handle)]
    assert not left, f"still running after the demo: {left}"
    assert not (root / "state.json").exists()

"""``sluice events``: subject selection and line rendering on their own, then the replay and
the follow mode against a real nats-server holding ``SLUICE_EVENTS``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import sys

import jsonschema
import pytest
from nats.aio.client import Client

from cli import connecting, events, main
from libs import messages, streams
from tests.fixtures.nats import NatsServer

REPO = pathlib.Path(__file__).resolve().parents[2]
EVENT_SCHEMA = json.loads((REPO / "docs" / "events" / "event.schema.json").read_text())
REF = messages.CanaryRef(namespace="test", name="podinfo")


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("namespace", "name", "subject"),
    [
        ("test", "podinfo", "sluice.events.test.podinfo.>"),
        ("test", None, "sluice.events.test.>"),
        (None, None, "sluice.events.>"),
        (None, "podinfo", "sluice.events.*.podinfo.>"),
    ],
)
def test_subject_selection(namespace: str | None, name: str | None, subject: str) -> None:
    assert events.subject_for(namespace, name) == subject


@pytest.mark.parametrize(("namespace", "name"), [("te st", None), ("test", "a.b"), ("test", ">")])
def test_names_that_cannot_be_subject_tokens_are_refused(namespace: str, name: str | None) -> None:
    with pytest.raises(connecting.CliError, match="is not a valid Kubernetes name"):
        events.subject_for(namespace, name)


def test_default_namespace_comes_from_the_kubeconfig(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: x, user: u, namespace: team}}]\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {}}]\n"
    )
    given = argparse.Namespace(namespace=None, kubeconfig=str(kubeconfig))
    assert events.namespace_of(given) == "team"
    missing = argparse.Namespace(namespace=None, kubeconfig=str(tmp_path / "none"))
    assert events.namespace_of(missing) == "default"
    assert events.namespace_of(argparse.Namespace(namespace="x", kubeconfig="")) == "x"


def test_text_lines_are_aligned_columns() -> None:
    advanced = messages.WeightAdvanced(
        canary=REF,
        message="Advance podinfo.test canary weight 10",
        canary_weight=10,
        primary_weight=90,
        at_ms=0,
    )
    failed = messages.RolledBack(
        canary=REF,
        message="Canary failed! Scaling down podinfo.test",
        severity=messages.Severity.ERROR,
        reason="failed checks",
        at_ms=0,
    )
    lines = [events.header(), events.text_line(advanced), events.text_line(failed)]
    starts = {
        line.index(word)
        for line, word in zip(lines, ("MESSAGE", "Advance", "Canary f"), strict=True)
    }
    assert len(starts) == 1  # the messages start in the same column
    assert lines[1].startswith(events.timestamp(0))
    assert "test/podinfo" in lines[1]
    assert "weight_advanced" in lines[1]
    assert "error" in lines[2]


def test_metric_checked_is_only_shown_in_json_or_with_all() -> None:
    metric = messages.MetricChecked(canary=REF, metric="m", value=98.5, min=99, passed=False)
    assert not events.shown(metric, output="text", everything=False)
    assert events.shown(metric, output="text", everything=True)
    assert events.shown(metric, output="json", everything=False)
    assert events.describe(metric) == "m 98.5 (>= 99) failed"


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600.0), ("0", 0.0), ("1h30m", 5400.0)])
def test_since_is_a_go_duration(text: str, seconds: float) -> None:
    assert events.parse_duration(text, "--since") == seconds


def test_a_bad_since_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["events", "--since", "yesterday"]) == 1
    assert "--since: expected a duration" in capsys.readouterr().err


# --------------------------------------------------------------------------- the command


async def publish(nc: Client, event: messages.EventBase, namespace: str = "test") -> None:
    subject = messages.event_subject(namespace, event.canary.name, messages.event_kind(event))
    await nc.jetstream().publish(subject, messages.ENCODER.encode(event))


def sample(namespace: str = "test", name: str = "podinfo") -> list[messages.EventBase]:
    ref = messages.CanaryRef(namespace=namespace, name=name)
    return [
        messages.NewRevision(canary=ref, message=f"New revision detected! Scaling up {name}.{namespace}"),
        messages.MetricChecked(canary=ref, metric="request-success-rate", value=99.5, min=99, passed=True),
        messages.WeightAdvanced(canary=ref, message=f"Advance {name}.{namespace} canary weight 10", canary_weight=10, primary_weight=90),
        messages.RolledBack(canary=ref, message=f"Canary failed! Scaling down {name}.{namespace}", severity=messages.Severity.ERROR, reason="failed checks", failed_checks=10),
    ]  # fmt: skip


async def sluice(server: NatsServer, *argv: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "SLUICE_NATS_URL")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *argv, "--nats-url", server.url,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def outcome(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.integration
async def test_json_lines_are_the_events_as_on_the_wire(
    nats_server: NatsServer, nc: Client
) -> None:
    await streams.declare(nc.jetstream(), streams=(streams.EVENTS,))
    for event in [*sample(), *sample("other", "checkout")]:
        await publish(nc, event, event.canary.namespace)
    code, out, err = await outcome(await sluice(nats_server, "events", "-n", "test", "-o", "json"))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4  # metric_checked included, the other namespace not
    for line, sent in zip(lines, sample(), strict=True):
        jsonschema.validate(json.loads(line), EVENT_SCHEMA)
        decoded = messages.EVENT_DECODER.decode(line)
        assert type(decoded) is type(sent)
        assert decoded.canary == REF
    everything = await outcome(await sluice(nats_server, "events", "-A", "-o", "json"))
    assert len(everything[1].splitlines()) == 8


@pytest.mark.integration
async def test_text_mode_leaves_metric_values_out(nats_server: NatsServer, nc: Client) -> None:
    await streams.declare(nc.jetstream(), streams=(streams.EVENTS,))
    for event in sample():
        await publish(nc, event)
    code, out, _ = await outcome(await sluice(nats_server, "events", "podinfo", "-n", "test"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "CANARY", "KIND", "SEVERITY", "MESSAGE"]
    assert [line.split()[3] for line in lines[1:]] == [
        "new_revision",
        "weight_advanced",
        "rolled_back",
    ]
    assert (
        "metric_checked" in (await outcome(await sluice(nats_server, "events", "-A", "--all")))[1]
    )


@pytest.mark.integration
async def test_since_leaves_older_events_out(nats_server: NatsServer, nc: Client) -> None:
    await streams.declare(nc.jetstream(), streams=(streams.EVENTS,))
    old, *_, new = sample()
    await publish(nc, old)
    await asyncio.sleep(1.0)  # stored a second apart; the replay starts between them
    await publish(nc, new)
    got: list[messages.EventBase] = []
    await events.replay(
        nc,
        events.subject_for("test", None),
        0.5,
        lambda _, event: got.append(event),
        follow=False,
        stop=asyncio.Event(),
    )
    assert [messages.event_kind(e) for e in got] == ["rolled_back"]
    everything: list[messages.EventBase] = []
    await events.replay(
        nc,
        messages.EVENTS_ALL,
        0,
        lambda _, e: everything.append(e),
        follow=False,
        stop=asyncio.Event(),
    )
    assert len(everything) == 2


@pytest.mark.integration
async def test_follow_prints_new_events_until_ctrl_c(nats_server: NatsServer, nc: Client) -> None:
    await streams.declare(nc.jetstream(), streams=(streams.EVENTS,))
    first, *_, later = sample()
    await publish(nc, first)
    proc = await sluice(nats_server, "events", "-n", "test", "-f", "-o", "json")
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    assert type(messages.EVENT_DECODER.decode(line)) is messages.NewRevision
    await publish(nc, later)  # after the replay: only following can show it
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    assert type(messages.EVENT_DECODER.decode(line)) is messages.RolledBack
    proc.send_signal(signal.SIGINT)
    code, _, err = await outcome(proc)
    assert code == 0, err


@pytest.mark.integration
async def test_without_the_stream_it_says_so(nats_server: NatsServer) -> None:
    code, _, err = await outcome(await sluice(nats_server, "events", "-A"))
    assert code == 1
    assert "no SLUICE_EVENTS stream on NATS at" in err


async def test_without_nats_it_names_the_address() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "events", "-A", "--nats-url", "nats://127.0.0.1:1",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    code, _, err = await outcome(proc)
    assert code == 1
    assert "cannot reach NATS at nats://127.0.0.1:1 (--nats-url)" in err

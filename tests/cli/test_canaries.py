"""``sluice get canaries`` / ``describe canary``: the rendering on its own, then the installed
commands (``sluice`` and the kubectl plugin ``kubectl sluice``) against a sandbox stack whose
Canary status and Events are written with the real kubectl."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from cli import canaries
from tests.sandbox.e2e import support

VENV_BIN = pathlib.Path(sys.executable).parent

PROGRESSING: dict[str, Any] = {
    "phase": "Progressing",
    "canaryWeight": 30,
    "failedChecks": 1,
    "iterations": 0,
    "lastTransitionTime": "2026-11-30T10:00:00Z",
    "metrics": [
        {"name": "request-success-rate", "value": 99.5, "min": 99, "passed": True},
        {"name": "request-duration", "value": 612.25, "max": 500, "passed": False},
    ],
    "conditions": [
        {"type": "Promoted", "status": "Unknown", "reason": "Progressing", "message": "..."}
    ],
}


def seed(namespace: str = "test", **analysis: Any) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    obj["metadata"]["namespace"] = namespace
    obj["metadata"]["uid"] = "uid-1"
    obj["spec"]["analysis"].update(analysis)
    return obj


def blue_green_waiting() -> dict[str, Any]:
    obj = seed("other", stepWeight=None, maxWeight=None, iterations=10)
    obj["metadata"]["name"] = "checkout"
    obj["status"] = {
        "phase": "WaitingPromotion",
        "iterations": 10,
        "failedChecks": 0,
        "lastTransitionTime": "2026-11-30T11:00:00Z",
        "conditions": [
            {
                "type": "Gate",
                "status": "False",
                "reason": "confirm-promotion",
                "message": "Halt checkout.other advancement waiting for promotion approval ask",
            }
        ],
    }
    return obj


def progressing() -> dict[str, Any]:
    obj = seed()
    obj["status"] = PROGRESSING
    return obj


def test_the_table_shows_progress_checks_metrics_and_gates() -> None:
    text = canaries.table([progressing(), blue_green_waiting()], all_namespaces=True)
    assert text.splitlines() == [
        "NAMESPACE   NAME       STATUS             WEIGHT   ITERATIONS   FAILEDCHECKS   "
        "METRICS                                              WAITING             "
        "LASTTRANSITIONTIME",
        "test        podinfo    Progressing        30       -            1/10           "
        "request-success-rate=99.5 request-duration=612.25!   -                   "
        "2026-11-30T10:00:00Z",
        "other       checkout   WaitingPromotion   -        10/10        0/10           "
        "-                                                    confirm-promotion   "
        "2026-11-30T11:00:00Z",
    ]


def test_one_namespace_drops_the_namespace_column_and_wide_adds_the_schedule() -> None:
    header = canaries.table([progressing()], wide=True).splitlines()[0].split()
    assert "NAMESPACE" not in header
    assert header[-4:] == ["SUSPENDED", "INTERVAL", "STEPWEIGHT", "MAXWEIGHT"]


def test_describe_reads_like_a_status_report() -> None:
    event = {
        "involvedObject": {"kind": "Canary", "name": "podinfo", "uid": "uid-1"},
        "type": "Warning",
        "count": 2,
        "lastTimestamp": "2026-11-30T10:00:05Z",
        "message": "Halt podinfo.test advancement request duration 612ms > 500ms",
    }
    other = {**event, "involvedObject": {"kind": "Canary", "name": "podinfo", "uid": "old"}}
    text = canaries.describe(progressing(), canaries.events_of(progressing(), [event, other]))
    lines = text.splitlines()
    assert "Strategy:      canary, weights 10, 20, 30, 40, 50" in lines
    assert "Weight:        30" in lines
    assert "Failed checks: 1 of 10" in lines
    assert any(
        line.split() == ["request-duration", "612.25", "<=", "500", "failed"] for line in lines
    )
    assert any(
        line.split() == ["request-success-rate", "99.5", ">=", "99", "passed"] for line in lines
    )
    assert lines[-1].split()[:3] == ["Warning", "2", "2026-11-30T10:00:05Z"]
    assert lines[-1].endswith("Halt podinfo.test advancement request duration 612ms > 500ms")
    assert sum("Halt podinfo.test" in line for line in lines) == 1  # not the older canary's


def test_describe_says_what_gate_a_canary_waits_at() -> None:
    text = canaries.describe(blue_green_waiting(), [])
    assert "Strategy:      blue-green, 10 iterations" in text.splitlines()
    assert (
        "Waiting:       confirm-promotion: Halt checkout.other advancement waiting for "
        "promotion approval ask"
    ) in text.splitlines()
    assert text.splitlines()[-2:] == ["Events:", "  <none>"]


def test_describe_shows_a_pause_and_the_last_request() -> None:
    obj = copy.deepcopy(progressing())
    obj["status"]["conditions"].append(
        {"type": "Paused", "status": "True", "reason": "Paused", "message": "Paused by carol"}
    )
    obj["status"]["control"] = {
        "action": "abort",
        "by": "alice",
        "reason": "p99 looks bad",
        "requestedAt": "2026-11-30T10:00:00Z",
    }
    lines = canaries.describe(obj, []).splitlines()
    assert "Paused:        Paused by carol" in lines
    assert "Last request:  abort by alice at 2026-11-30T10:00:00Z (p99 looks bad): pending" in lines
    obj["status"]["control"] |= {"handledAt": "2026-11-30T10:00:01Z", "outcome": "rolled back"}
    assert (
        "Last request:  abort by alice at 2026-11-30T10:00:00Z (p99 looks bad): "
        "rolled back at 2026-11-30T10:00:01Z"
    ) in canaries.describe(obj, []).splitlines()


# --------------------------------------------------------------------------- against a stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    running = support.start_stack_blocking(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        support.stop_stack_blocking(running)


def run(stack: support.Stack, *argv: str, stdin: str | None = None) -> support.Result:
    env = stack.env | {"PATH": f"{VENV_BIN}{os.pathsep}{stack.env['PATH']}"}
    done = subprocess.run(
        list(argv), env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    return support.Result(done.returncode, done.stdout, done.stderr)


def kubectl(stack: support.Stack, *args: str, stdin: str | None = None) -> support.Result:
    result = run(stack, shutil.which("kubectl") or "/usr/bin/kubectl", *args, stdin=stdin)
    assert result.code == 0, result.stderr
    return result


@pytest.mark.integration
def test_the_installed_commands_against_the_api(stack: support.Stack) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cli"}}
    canary = seed("cli")
    del canary["metadata"]["uid"]
    kubectl(stack, "apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, canary]))
    kubectl(
        stack,
        "patch",
        "canary",
        "podinfo",
        "-n",
        "cli",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": PROGRESSING}),
    )
    uid = kubectl(stack, "get", "canary", "podinfo", "-n", "cli", "-o", "jsonpath={.metadata.uid}")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "podinfo.advance", "namespace": "cli"},
        "involvedObject": {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "name": "podinfo",
            "namespace": "cli",
            "uid": uid.stdout,
        },
        "reason": "Synced",
        "type": "Normal",
        "message": "Advance podinfo.cli canary weight 30",
        "count": 1,
        "lastTimestamp": "2026-11-30T10:00:05Z",
        "source": {"component": "flagger"},
    }
    kubectl(stack, "create", "-f", "-", stdin=yaml.safe_dump(event))

    listed = run(stack, str(VENV_BIN / "sluice"), "get", "canaries", "-n", "cli")
    assert listed.code == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:4] == ["podinfo", "Progressing", "30", "-"]
    every = run(stack, str(VENV_BIN / "sluice"), "get", "canaries", "-A", "-o", "json")
    assert [i["metadata"]["name"] for i in json.loads(every.stdout)["items"]] == ["podinfo"]

    described = run(stack, "kubectl", "sluice", "describe", "canary", "podinfo", "-n", "cli")
    assert described.code == 0, described.stderr
    assert "Phase:         Progressing" in described.stdout.splitlines()
    assert described.stdout.rstrip().endswith("Advance podinfo.cli canary weight 30")

    missing = run(stack, "kubectl", "sluice", "describe", "canary", "nope", "-n", "cli")
    assert (missing.code, missing.stderr.strip()) == (
        1,
        'sluice: canary "nope" not found in namespace cli',
    )
    empty = run(stack, str(VENV_BIN / "sluice"), "get", "canaries", "-n", "default")
    assert (empty.code, empty.stderr.strip()) == (0, "No canaries found in default namespace.")


def test_a_kubeconfig_that_cannot_be_read_is_named() -> None:
    done = subprocess.run(
        [str(VENV_BIN / "sluice"), "get", "canaries", "--kubeconfig", "/nonexistent/config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "sluice: --kubeconfig / KUBECONFIG: cannot load the kubeconfig /nonexistent/config"
    )

"""``make demo``: Flagger's APISIX tutorial end to end on a local sandbox, in about four minutes.

What it does, the way a user would with the stock kubectl:

1. starts a chat sink that records the Slack messages Sluice sends, then ``python -m sandbox
   up --with-sluice`` in a state directory of its own (a fresh temporary one unless ``--dir``),
   with ``--free-ports`` and a pod network of its own, so it never meets ``make sandbox-up``;
2. applies the tutorial's podinfo Deployment, its HPA, the ApisixRoute and the Canary from
   ``tests/data/manifests/`` unchanged, and waits for the canary's phase Initialized;
3. rollout 1, a good revision: ``kubectl set image ... podinfo:6.0.1``; waits for Succeeded;
4. rollout 2, a faulty revision: a new image tag whose pods answer half of the requests with
   HTTP 500 (``SANDBOX_ERROR_RATE=0.5``, which the sandbox's pods honour), as one change of the
   pod template so that it is one revision; waits for Failed;
5. exits 0 when rollout 1 was promoted (the primary runs 6.0.1) and rollout 2 rolled back (the
   primary unchanged), 1 otherwise with a line saying what was expected and what happened, and
   stops everything it started — on success, failure and Ctrl-C / SIGTERM — unless ``--keep``.

While it runs it shows the canary's weight and phase, each metric's last value against its
threshold (``metric_checked`` events), the events as ``kubectl describe canary`` lists them and
the Slack messages the sink received: a live view on a terminal, plain lines otherwise (CI,
pipes, ``--plain``). Events come from the bus: a JetStream ordered consumer on
``sluice.events.test.podinfo.>``, so they are the stream's de-duplicated events, exactly what
the notifier sees. Every wait has a deadline; a failure names what was expected, what happened
and the logs to read (the state directory is kept when the demo fails).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import html
import io
import ipaddress
import json
import os
import pathlib
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import nats
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from libs import messages
from sandbox import control as sandbox_control
from sandbox import processes as sandbox_processes
from sandbox import stack as sandbox_stack

REPO = pathlib.Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "tests" / "data" / "manifests"
# the tutorial's order: the workload and its autoscaler, the route, then the canary
MANIFEST_FILES = (
    "podinfo-deployment.yaml",
    "podinfo-hpa.yaml",
    "podinfo-apisixroute.yaml",
    "podinfo-canary.yaml",
)
NAMESPACE = "test"
CANARY = "podinfo"
TARGET = "podinfo"  # the Canary's targetRef
PRIMARY = f"{TARGET}-primary"
CONTAINER = "podinfod"
GOOD_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.1"
FAULTY_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.2"
FAULT_VARIABLE = "SANDBOX_ERROR_RATE"  # share of requests the sandbox's pods answer with 500
FAULT_VALUE = "0.5"
EVENTS_SUBJECT = f"{messages.EVENTS_PREFIX}.{NAMESPACE}.{CANARY}.>"
SLACK_PATH = "/slack"

# Deadlines, seconds. The seed Canary steps every 10 s: initialization takes ~15 s, a promotion
# ~9 steps (~90 s), a rollback ~12 (threshold 10: ~120 s); the stack starts in ~10 s.
UP_TIMEOUT_S = 120.0  # python -m sandbox up (it gives its components 60 s to answer)
KUBECTL_TIMEOUT_S = 30.0  # one kubectl command
INITIALIZED_TIMEOUT_S = 60.0  # kubectl apply -> phase Initialized
REVISION_TIMEOUT_S = 30.0  # the change -> "New revision detected" on the bus
PROMOTION_TIMEOUT_S = 150.0  # new revision -> Succeeded
ROLLBACK_TIMEOUT_S = 180.0  # new revision -> Failed
DEADLINE_S = 300.0  # the whole demo, teardown excluded (the README promises under 5 minutes)
UP_INTERRUPT_S = 30.0  # an interrupted `sandbox up` stops what it started within this
DOWN_TIMEOUT_S = 90.0  # sandbox down: SIGTERM to all, 10 s, SIGKILL what is left, 5 s
POLL_S = 1.0  # between two `kubectl get canary` while waiting for a phase (a polling period)
REFRESH_S = 0.25  # live view refresh period
BAR_WIDTH = 30
SUMMARY_LINES = 11  # printed under the live view at the end (verdicts, times, teardown)
MIN_FINAL_HEIGHT = 24

POD_PORT = 9898  # podinfo's port, on every pod's own loopback address
POD_PROBES = 32  # pod addresses checked when choosing a pod network

SHOWN_EVENTS = 14
SHOWN_SLACK = 6
SHOWN_ACTIONS = 6

# Bus events that `kubectl describe canary` does not list (services.notifier.kubeevents
# .NOT_RECORDED: measurements and the watcher's hints); a test keeps the two equal.
NOT_DESCRIBED = frozenset({"metric_checked", "revision_detected"})
# Units of Flagger's builtin metrics (anything else is shown bare).
UNITS = {"request-success-rate": "%", "request-duration": "ms"}
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# What the demo drops from the environment it hands its children: a shell that sourced a
# sandbox env file (or runs Sluice) must not point the demo's stack or kubectl elsewhere.
DROPPED_PREFIXES = ("SLUICE_", "SANDBOX_", "KUBE")
DROPPED_VARIABLES = frozenset(sandbox_control.PROXY_VARIABLES) | {
    "NATS_URL",
    "PROMETHEUS_URL",
    "GATEWAY_URL",
    "POD_NETWORK",
    "LOADTESTER_PORT",
}

T = TypeVar("T")


class DemoFailure(Exception):
    """The demo did not go as expected; the message says what was expected and what happened."""


# ----------------------------------------------------------------------------- what is shown


@dataclasses.dataclass
class Metric:
    """One metric of the Canary: its threshold, and its last measured value."""

    name: str
    min: float | None = None
    max: float | None = None
    value: float | None = None
    passed: bool | None = None  # None: not measured yet
    measured: bool = False  # a metric_checked event arrived (value None then: no values)


@dataclasses.dataclass(frozen=True)
class Entry:
    at_s: float  # seconds since the demo started
    text: str
    style: str = ""  # a rich style
    tag: str = ""  # e.g. an event's type (Normal, Warning)


def clock(seconds: float) -> str:
    """``m:ss`` of a duration (negative shown as 0)."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def duration(seconds: float) -> str:
    """``3m58s`` / ``42.1s``."""
    if seconds >= 60:
        whole = round(seconds)
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{seconds:.1f}s"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def unit(metric: str) -> str:
    return UNITS.get(metric, "")


def number(value: float) -> str:
    return f"{value:g}"


def threshold_text(metric: Metric) -> str:
    """``≥ 99%``, ``≤ 500ms``, ``99..100`` or ``—`` (no threshold known yet)."""
    u = unit(metric.name)
    if metric.min is not None and metric.max is not None:
        return f"{number(metric.min)}..{number(metric.max)}{u}"
    if metric.min is not None:
        return f"≥ {number(metric.min)}{u}"
    if metric.max is not None:
        return f"≤ {number(metric.max)}{u}"
    return "—"


def value_text(metric: Metric) -> str:
    if not metric.measured:
        return "not measured yet"
    if metric.value is None:
        return "no values"
    return f"{metric.value:.2f}{unit(metric.name)}"


def verdict_text(metric: Metric) -> str:
    if metric.passed is None:
        return ""
    return "ok" if metric.passed else "FAILS"


def described(event: messages.EventBase) -> bool:
    """Whether ``kubectl describe canary`` lists this bus event (as the notifier records it)."""
    return bool(event.message) and messages.event_kind(event) not in NOT_DESCRIBED


def event_type(event: messages.EventBase) -> str:
    """Kubernetes' event type, as describe shows it."""
    return "Normal" if event.severity == messages.Severity.INFO else "Warning"


def severity_style(severity: str) -> str:
    return {"warn": "yellow", "error": "bold red"}.get(severity, "")


def slack_text(payload: Any) -> tuple[str, str]:
    """(text, colour) of a Slack webhook body (``attachments[0]``: text and fields, Slack's
    escaping undone); a body of another shape is shown as clipped JSON."""
    try:
        attachment = payload["attachments"][0]
        text = html.unescape(str(attachment["text"]))
        fields = [
            f"{html.unescape(str(f['title']))}: {html.unescape(str(f['value']))}"
            for f in attachment.get("fields") or ()
            if f.get("title") in ("Reason", "Failed checks")
        ]
        colour = str(attachment.get("color", ""))
    except (KeyError, IndexError, TypeError, AttributeError):
        return json.dumps(payload)[:200], ""
    return " · ".join([text, *fields]), colour


def _discard(_line: str) -> None:
    pass


@dataclasses.dataclass
class Board:
    """Everything the demo shows, as plain data: the bus, kubectl and the chat sink update it;
    ``render`` draws it; in plain mode ``out`` gets one line per change."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    stage: str = "starting the sandbox"
    phase: str = ""
    weight: int = 0
    max_weight: int = 0
    failed_checks: int = 0
    threshold: int = 0
    metrics: dict[str, Metric] = dataclasses.field(default_factory=dict)
    events: list[Entry] = dataclasses.field(default_factory=list)
    slack: list[Entry] = dataclasses.field(default_factory=list)
    actions: list[Entry] = dataclasses.field(default_factory=list)
    out: Callable[[str], None] = _discard

    def at(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def _line(self, at_s: float, word: str, text: str) -> None:
        self.out(f"[{at_s:6.1f}s] {word:<7} {text}")

    def set_stage(self, stage: str, now: float | None = None) -> None:
        self.stage = stage
        self._line(self.at(now), "stage", stage)

    def action(self, text: str, now: float | None = None, style: str = "") -> None:
        at_s = self.at(now)
        self.actions.append(Entry(at_s, text, style))
        self._line(at_s, "demo", text)

    def set_phase(self, phase: str, now: float | None = None) -> None:
        if phase and phase != self.phase:
            self.phase = phase
            self._line(self.at(now), "phase", phase)

    def event(self, event: messages.EventBase, now: float | None = None) -> None:
        """A bus event arrived."""
        at_s = self.at(now)
        match event:
            case messages.MetricChecked():
                metric = self.metrics.setdefault(event.metric, Metric(event.metric))
                metric.min, metric.max = event.min, event.max
                metric.value, metric.passed, metric.measured = event.value, event.passed, True
                self._line(
                    at_s,
                    "metric",
                    f"{event.metric} {value_text(metric)} "
                    f"({threshold_text(metric)}) {verdict_text(metric)}",
                )
            case messages.WeightAdvanced():
                self.weight = event.canary_weight
            case messages.PhaseChanged():
                self.set_phase(str(event.phase), now)
            case messages.Halted():
                self.failed_checks = max(self.failed_checks, event.failed_checks)
            case _:
                pass
        if described(event):
            style = severity_style(str(event.severity))
            self.events.append(Entry(at_s, event.message, style, event_type(event)))
            self._line(at_s, "event", f"{event_type(event):<8} {event.message}")

    def chat(self, payload: Any, now: float | None = None) -> None:
        """The sink received a Slack message."""
        text, colour = slack_text(payload)
        at_s = self.at(now)
        self.slack.append(Entry(at_s, text, "red" if colour == "danger" else ""))
        self._line(at_s, "slack", text)

    def canary(self, obj: Mapping[str, Any], now: float | None = None) -> None:
        """What ``kubectl get canary -o json`` says: status, and the analysis' limits."""
        analysis = (obj.get("spec") or {}).get("analysis") or {}
        self.max_weight = int(analysis.get("maxWeight") or self.max_weight)
        self.threshold = int(analysis.get("threshold") or self.threshold)
        for spec in analysis.get("metrics") or ():
            name = str(spec.get("name", ""))
            if name and name not in self.metrics:
                limits = spec.get("thresholdRange") or {}
                self.metrics[name] = Metric(name, limits.get("min"), limits.get("max"))
        status = obj.get("status") or {}
        self.weight = int(status.get("canaryWeight") or 0)
        self.failed_checks = int(status.get("failedChecks") or 0)
        self.set_phase(str(status.get("phase") or ""), now)


def weight_bar(weight: int, limit: int, width: int = BAR_WIDTH) -> Text:
    """``━━━━━━━━───────`` (legible without colours too)."""
    filled = round(width * min(max(weight, 0), limit) / limit) if limit > 0 else 0
    return Text("━" * filled, style="bold green") + Text("─" * (width - filled), style="dim")


def fit(height: int | None, metrics: int) -> tuple[int, int, int]:
    """Rows of the events, Slack and demo panels (``… N earlier`` included) for a terminal of
    ``height`` lines; the defaults when the height is not known."""
    if height is None:
        return SHOWN_EVENTS, SHOWN_SLACK, SHOWN_ACTIONS
    fixed = (6 + metrics) + 3 * 2 + 1  # the canary panel, three panels' borders, a spare line
    rows = max(3, height - fixed)
    events = max(1, rows // 2)
    slack = max(1, rows // 4)
    return events, slack, max(1, rows - events - slack)


def render(board: Board, now: float | None = None, height: int | None = None) -> RenderableType:
    """The live view of ``board``, as tall as ``height`` lines at most when it is given."""
    elapsed = board.at(now)
    top = Table.grid(padding=(0, 2))
    top.add_column(no_wrap=True)
    top.add_column(no_wrap=True)
    top.add_column(no_wrap=True)
    limit = board.max_weight or 100
    top.add_row("canary weight", weight_bar(board.weight, limit), f"{board.weight}/{limit}%")
    top.add_row(
        "phase",
        Text(board.phase or "—", style="bold")
        + Text(f"  failed checks {board.failed_checks}/{board.threshold or '?'}"),
        "",
    )
    metrics = Table(expand=False, box=None, padding=(0, 2), show_edge=False)
    metrics.add_column("metric", no_wrap=True)
    metrics.add_column("last value", justify="right", no_wrap=True)
    metrics.add_column("threshold", justify="right", no_wrap=True)
    metrics.add_column("", no_wrap=True)
    for metric in board.metrics.values():
        ok = metric.passed
        metrics.add_row(
            metric.name,
            value_text(metric),
            threshold_text(metric),
            Text(verdict_text(metric), style="green" if ok else "bold red" if ok is False else ""),
        )
    canary = Panel(
        Group(top, Text(""), metrics),
        title=f"[bold]Sluice demo[/] · {board.stage}",
        subtitle=f"{clock(elapsed)} elapsed",
        title_align="left",
        subtitle_align="right",
    )
    events, slack, actions = fit(height, len(board.metrics))
    return Group(
        canary,
        _entries_panel(
            f"Events · kubectl describe canary {CANARY} -n {NAMESPACE}", board.events, events
        ),
        _entries_panel(f"Slack · {plural(len(board.slack), 'message')}", board.slack, slack),
        _entries_panel("Demo", board.actions, actions),
    )


def _entries_panel(title: str, entries: Sequence[Entry], rows: int) -> Panel:
    """The newest entries in ``rows`` lines, one line each (cut with … when too long)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True, justify="right", min_width=5)  # "12:34"
    tagged = any(entry.tag for entry in entries)
    if tagged:
        table.add_column(no_wrap=True, min_width=7)  # "Warning"
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    shown = len(entries) if len(entries) <= rows else max(0, rows - 1)
    hidden = len(entries) - shown
    if hidden > 0:
        table.add_row("", *([""] if tagged else []), Text(f"… {hidden} earlier", style="dim"))
    for entry in entries[len(entries) - shown :]:
        cells = [Text(entry.tag, style=entry.style)] if tagged else []
        table.add_row(clock(entry.at_s), *cells, Text(entry.text, style=entry.style))
    if not entries:
        table.add_row("", Text("none yet", style="dim"))
    return Panel(table, title=title, title_align="left")


def render_text(
    board: Board, width: int = 100, now: float | None = None, height: int | None = None
) -> str:
    """The live view as plain text (tests, logs)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(render(board, now, height))
    return console.export_text()


# ----------------------------------------------------------------------------- outcomes


@dataclasses.dataclass(frozen=True)
class Container:
    """The primary's podinfo container, as its pod template has it."""

    image: str
    env: Mapping[str, str]

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> Container:
        spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in spec.get("containers") or ():
            if container.get("name") == CONTAINER:
                env = {
                    str(e.get("name")): str(e.get("value", "")) for e in container.get("env") or ()
                }
                return cls(str(container.get("image", "")), env)
        return cls("", {})

    def describe(self) -> str:
        fault = self.env.get(FAULT_VARIABLE)
        what = self.image or "no podinfod container"
        return f"{what} with {FAULT_VARIABLE}={fault}" if fault is not None else what


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    line: str


def judge_promotion(phase: str, primary: Container) -> Verdict:
    """Rollout 1: Succeeded, and the primary runs the good image without the fault."""
    if phase == "Succeeded" and primary.image == GOOD_IMAGE and FAULT_VARIABLE not in primary.env:
        return Verdict(
            True, f"promoted: rollout 1 ended Succeeded; {PRIMARY} runs {primary.describe()}"
        )
    return Verdict(
        False,
        f"rollout 1 (good revision): expected phase Succeeded with {PRIMARY} running "
        f"{GOOD_IMAGE}; got phase {phase or '(none)'} with {PRIMARY} running "
        f"{primary.describe()}",
    )


def judge_rollback(phase: str, before: Container, after: Container) -> Verdict:
    """Rollout 2: Failed, and the primary exactly as rollout 1 left it."""
    if phase == "Failed" and after == before and FAULT_VARIABLE not in after.env:
        return Verdict(
            True,
            f"rolled back: rollout 2 ended Failed; {PRIMARY} still runs {after.describe()}",
        )
    return Verdict(
        False,
        f"rollout 2 (faulty revision): expected phase Failed with {PRIMARY} unchanged "
        f"({before.describe()}); got phase {phase or '(none)'} with {PRIMARY} running "
        f"{after.describe()}",
    )


@dataclasses.dataclass
class Report:
    """What the summary says."""

    verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    failure: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # stage -> seconds
    revision_latency_s: float | None = None  # kubectl set image -> "New revision detected"
    slack_messages: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failure and len(self.verdicts) == 2 and all(v.ok for v in self.verdicts)


def summary(report: Report) -> list[str]:
    lines = [v.line for v in report.verdicts]
    if report.failure:
        lines.append(f"FAILED: {report.failure}")
    stages = ", ".join(f"{name} {duration(s)}" for name, s in report.timings.items())
    lines.append(f"wall time: {duration(report.wall_s)}" + (f" ({stages})" if stages else ""))
    if report.revision_latency_s is not None:
        lines.append(
            f'kubectl set image → "New revision detected" on the bus: '
            f"{report.revision_latency_s:.2f}s"
        )
    lines.append(f"Slack messages received by the sink: {report.slack_messages}")
    lines.append("demo passed" if report.ok else "demo FAILED")
    return lines


def keep_instructions(root: pathlib.Path) -> list[str]:
    python = shlex.quote(_shown_path(pathlib.Path(sys.executable)))
    where = shlex.quote(_shown_path(root))
    return [
        "The stack keeps running (--keep). Use it:",
        f"  source {where}/env",
        f"  kubectl get canaries -n {NAMESPACE}",
        f"  kubectl describe canary {CANARY} -n {NAMESPACE}",
        f"  {python} -m sandbox --dir {where} down     # stops it",
        "(The chat sink ended with the demo: the notifier's Slack deliveries fail from now on.)",
    ]


def _shown_path(path: pathlib.Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- the chat sink


class ChatSink:
    """An HTTP server on 127.0.0.1 that records every JSON body POSTed to it (Slack's webhook
    answers "ok")."""

    def __init__(self, on_message: Callable[[Any], None]) -> None:
        self.on_message = on_message
        self.payloads: list[Any] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{SLACK_PATH}"
        return self.url

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = {"raw": body[:200].decode(errors="replace")}
        self.payloads.append(payload)
        self.on_message(payload)
        return web.Response(text="ok")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# ----------------------------------------------------------------------------- the run


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without what would point the stack or kubectl at another sandbox."""
    return {
        k: v
        for k, v in base.items()
        if k not in DROPPED_VARIABLES and not k.startswith(DROPPED_PREFIXES)
    }


def network_in_use(network: ipaddress.IPv4Network, probes: int = POD_PROBES) -> bool:
    """Whether another stack's pods seem to use ``network``: one of its first pod addresses
    (the simulator hands them out from .0.2 on) has the app's port taken."""
    first = int(network.network_address) + 2
    for offset in range(probes):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((str(ipaddress.IPv4Address(first + offset)), POD_PORT))
            except OSError:
                return True
    return False


def random_pod_network() -> ipaddress.IPv4Network:
    """A /16 of its own, one no other stack's pods seem to use: sandbox-up uses 127.42, the
    sandbox's e2e tests 127.50-99, its unit tests 127.100+; the demo picks in 127.20-39."""
    candidates = [ipaddress.IPv4Network(f"127.{n}.0.0/16") for n in range(20, 40)]
    random.shuffle(candidates)
    for network in candidates:
        if not network_in_use(network):
            return network
    return candidates[0]


async def poll(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float,
    failure: Callable[[T | None], str],
    interval: float = POLL_S,
) -> T:
    """``probe()`` every ``interval`` until ``done``; ``DemoFailure(failure(last))`` at the
    deadline. (``interval`` is a polling period, never a synchronisation sleep.)"""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise DemoFailure(failure(last))
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


@dataclasses.dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the bus delivered it
    event: messages.EventBase


class Demo:
    def __init__(
        self,
        root: pathlib.Path,
        board: Board,
        pod_network: ipaddress.IPv4Network,
        deadline_s: float = DEADLINE_S,
    ) -> None:
        self.root = root
        self.board = board
        self.pod_network = pod_network
        self.deadline = board.started + deadline_s
        self.deadline_s = deadline_s
        self.env = child_environment(os.environ)
        self.kube_env: dict[str, str] = {}
        self.sink = ChatSink(board.chat)
        self.nc: NATS | None = None
        self.arrivals: list[Arrival] = []
        self.arrived = asyncio.Condition()
        self.up_proc: asyncio.subprocess.Process | None = None
        self.stack_started = False  # `sandbox up` ran (down is needed even if it failed)
        self.kubectl_s = 0.0  # how long the last kubectl command took
        self.report = Report()

    # --- helpers ---

    def log(self, *names: str) -> str:
        logs = self.root / "logs"
        return ", ".join(_shown_path(logs / f"{name}.log") for name in names)

    def budget(self, timeout: float) -> float:
        """``timeout`` clipped to what is left of the demo's deadline."""
        return max(0.0, min(timeout, self.deadline - time.monotonic()))

    def overdue(self) -> str:
        return (
            f" (the demo's {self.deadline_s:g}s deadline cut this wait short)"
            if time.monotonic() >= self.deadline - 0.5
            else ""
        )

    async def kubectl(self, *args: str, show: bool = True) -> str:
        binary = shutil.which("kubectl", path=self.env.get("PATH")) or "kubectl"  # main checked
        if show:
            self.board.action("$ kubectl " + shlex.join(args))
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.kube_env or self.env,
            cwd=REPO,
            start_new_session=True,  # a Ctrl-C reaches the demo only; it stops what runs
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), KUBECTL_TIMEOUT_S)
        except TimeoutError as exc:
            raise DemoFailure(
                f"expected `kubectl {shlex.join(args)}` to finish within "
                f"{KUBECTL_TIMEOUT_S:g}s; it did not (Kubernetes API log: {self.log('kube')})"
            ) from exc
        finally:
            if proc.returncode is None:  # timed out or interrupted
                proc.kill()
                await proc.wait()
        self.kubectl_s = time.monotonic() - started
        if proc.returncode != 0:
            raise DemoFailure(
                f"expected `kubectl {shlex.join(args)}` to succeed; it exited with "
                f"{proc.returncode}: {err.decode(errors='replace').strip()}"
            )
        return out.decode(errors="replace")

    async def get_json(self, *args: str) -> dict[str, Any]:
        text = await self.kubectl("get", *args, "-n", NAMESPACE, "-o", "json", show=False)
        data = json.loads(text)
        return data if isinstance(data, dict) else {}

    async def canary(self) -> dict[str, Any]:
        obj = await self.get_json("canary", CANARY)
        self.board.canary(obj)
        return obj

    async def primary(self) -> Container:
        return Container.of(await self.get_json("deployment", PRIMARY))

    def describe_canary(self, obj: Mapping[str, Any] | None) -> str:
        status = (obj or {}).get("status") or {}
        return (
            f"the canary is {status.get('phase') or 'without a phase'} at weight "
            f"{status.get('canaryWeight') or 0}% with {status.get('failedChecks') or 0} failed "
            f"checks"
        )

    # --- the stack ---

    async def up(self) -> None:
        url = await self.sink.start()
        self.board.action(f"chat sink listening on {url}")
        argv = [
            sys.executable,
            "-m",
            "sandbox",
            "--dir",
            str(self.root),
            "up",
            "--free-ports",
            "--pod-network",
            str(self.pod_network),
            "--with-sluice",
            "--sluice-env",
            f"SLUICE_SLACK_URL={url}",
        ]
        self.board.action(
            "$ python -m sandbox --dir "
            + shlex.quote(_shown_path(self.root))
            + " up --free-ports --with-sluice --sluice-env SLUICE_SLACK_URL="
            + url
        )
        self.stack_started = True
        proc = self.up_proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
            start_new_session=True,  # signals reach it from the demo, in order
        )
        output: list[str] = []

        async def follow() -> int:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                output.append(line)
                if line:
                    self.board.action("sandbox: " + line.removeprefix("sandbox: "), style="dim")
            return await proc.wait()

        try:
            code = await asyncio.wait_for(follow(), self.budget(UP_TIMEOUT_S))
        except TimeoutError as exc:
            raise DemoFailure(
                f"expected `python -m sandbox up` to start the stack within {UP_TIMEOUT_S:g}s; "
                f"it did not (logs in {self.log('*')})"
            ) from exc
        if code != 0:
            tail = "\n".join(output[-15:])
            raise DemoFailure(
                f"expected `python -m sandbox up` to start the stack; it exited with {code}:\n"
                f"{tail}"
            )
        env_file = self.root / "env"
        self.kube_env = {**self.env, **sandbox_stack.parse_env(env_file.read_text())}
        self.board.action(f"stack is up; its env file: {_shown_path(env_file)}")

    async def listen(self) -> None:
        """Follow the canary's events on the bus (JetStream, so de-duplicated)."""

        async def quiet(_error: Exception) -> None:
            pass

        self.nc = await nats.connect(
            self.kube_env["NATS_URL"],
            connect_timeout=5,
            max_reconnect_attempts=5,
            error_cb=quiet,
            name="sluice-demo",
        )
        js = self.nc.jetstream()
        await js.subscribe(
            EVENTS_SUBJECT,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.ALL,  # the stack is new: all there is
        )
        self.board.action(f"following {EVENTS_SUBJECT} on {self.kube_env['NATS_URL']}")

    async def _on_message(self, msg: Msg) -> None:
        arrived = time.monotonic()
        try:
            event = messages.EVENT_DECODER.decode(msg.data)
        except msgspec.DecodeError as exc:  # a newer kind of event: say so, go on
            self.board.action(f"undecodable event on {msg.subject}: {exc}", style="yellow")
            return
        self.board.event(event, arrived)
        async with self.arrived:
            self.arrivals.append(Arrival(arrived, event))
            self.arrived.notify_all()

    async def wait_event(self, kind: str, after: float, timeout: float, failure: str) -> Arrival:
        """The first ``kind`` event that arrived after ``after`` (monotonic)."""

        def found() -> Arrival | None:
            for arrival in self.arrivals:
                if arrival.at >= after and messages.event_kind(arrival.event) == kind:
                    return arrival
            return None

        async with self.arrived:
            existing = found()
            if existing is not None:
                return existing
            try:
                await asyncio.wait_for(
                    self.arrived.wait_for(lambda: found() is not None), self.budget(timeout)
                )
            except TimeoutError as exc:
                raise DemoFailure(failure + self.overdue()) from exc
        arrival = found()
        assert arrival is not None
        return arrival

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
            self.nc = None
        await self.sink.stop()

    async def stop_up(self) -> None:
        """An interrupted `sandbox up` stops what it started itself (on SIGINT)."""
        proc = self.up_proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), UP_INTERRUPT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    # --- the story ---

    async def run(self) -> Report:
        report = self.report
        t0 = time.monotonic()
        await self.up()
        await self.listen()
        report.timings["sandbox up"] = time.monotonic() - t0

        self.board.set_stage("applying the tutorial's manifests")
        t0 = time.monotonic()
        files = [w for name in MANIFEST_FILES for w in ("-f", _shown_path(MANIFESTS / name))]
        await self.kubectl("apply", *files)
        await poll(
            self.canary,
            lambda obj: (obj.get("status") or {}).get("phase") == "Initialized",
            self.budget(INITIALIZED_TIMEOUT_S),
            lambda obj: (
                f"expected the canary to reach phase Initialized within "
                f"{INITIALIZED_TIMEOUT_S:g}s of `kubectl apply`; {self.describe_canary(obj)}"
                f"{self.overdue()} (logs: {self.log('sluice-analyzer', 'sluice-traffic-shifter')})"
            ),
        )
        report.timings["initialization"] = time.monotonic() - t0

        # rollout 1: a good revision
        self.board.set_stage(f"rollout 1 of 2: a good revision ({GOOD_IMAGE.rsplit('/', 1)[-1]})")
        t0 = time.monotonic()
        await self.kubectl(
            "set", "image", f"deployment/{TARGET}", f"{CONTAINER}={GOOD_IMAGE}", "-n", NAMESPACE
        )
        phase, latency = await self.rollout(t0, "rollout 1", "Succeeded", PROMOTION_TIMEOUT_S)
        report.revision_latency_s = latency
        primary = await self.primary()
        verdict = judge_promotion(phase, primary)
        self._verdict(verdict)
        report.timings["rollout 1"] = time.monotonic() - t0
        if not verdict.ok:
            return report

        # rollout 2: a faulty revision, one change of the pod template (one revision)
        self.board.set_stage(
            f"rollout 2 of 2: a faulty revision ({FAULTY_IMAGE.rsplit('/', 1)[-1]}, "
            f"{FAULT_VARIABLE}={FAULT_VALUE})"
        )
        before = primary
        t0 = time.monotonic()
        change = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": CONTAINER,
                                "image": FAULTY_IMAGE,
                                "env": [{"name": FAULT_VARIABLE, "value": FAULT_VALUE}],
                            }
                        ]
                    }
                }
            }
        }
        self.board.action(
            f"(= kubectl set image … {CONTAINER}={FAULTY_IMAGE} + kubectl set env … "
            f"{FAULT_VARIABLE}={FAULT_VALUE}, in one write so that it is one revision)",
            style="dim",
        )
        await self.kubectl(
            "patch",
            f"deployment/{TARGET}",
            "-n",
            NAMESPACE,
            "--type=strategic",
            "-p",
            json.dumps(change, separators=(",", ":")),
        )
        phase, _ = await self.rollout(t0, "rollout 2", "Failed", ROLLBACK_TIMEOUT_S)
        self._verdict(judge_rollback(phase, before, await self.primary()))
        report.timings["rollout 2"] = time.monotonic() - t0
        return report

    def _verdict(self, verdict: Verdict) -> None:
        self.report.verdicts.append(verdict)
        self.board.action(verdict.line, style="bold green" if verdict.ok else "bold red")

    async def rollout(
        self, started: float, name: str, expected: str, timeout: float
    ) -> tuple[str, float]:
        """Wait for "New revision detected" then for the canary's end of that revision; the
        phase it ended in and the latency of the event (from ``started``, monotonic)."""
        arrival = await self.wait_event(
            "new_revision",
            started,
            REVISION_TIMEOUT_S,
            f'{name}: expected "New revision detected! Scaling up {TARGET}.{NAMESPACE}" on the '
            f"bus within {REVISION_TIMEOUT_S:g}s of the change; it did not arrive (logs: "
            f"{self.log('sluice-watcher', 'sluice-analyzer')})",
        )
        latency = arrival.at - started
        self.board.action(
            f'"New revision detected" arrived {latency:.2f}s after the change '
            f"(kubectl itself took {self.kubectl_s:.2f}s)"
        )
        revision = arrival.event.revision

        def ended(obj: Mapping[str, Any]) -> bool:
            status = obj.get("status") or {}
            # the status of *this* revision (events are published before the status is written)
            return (
                status.get("phase") in TERMINAL_PHASES and status.get("lastAppliedSpec") == revision
            )

        obj = await poll(
            self.canary,
            ended,
            self.budget(timeout),
            lambda obj: (
                f"{name}: expected the canary to end {expected} within {timeout:g}s of the new "
                f"revision; {self.describe_canary(obj)}{self.overdue()} (logs: "
                f"{self.log('sluice-analyzer', 'sluice-traffic-shifter', 'sluice-webhook-runner')})"
            ),
        )
        return str((obj.get("status") or {}).get("phase")), latency


# ----------------------------------------------------------------------------- main


@contextlib.contextmanager
def live_view(board: Board, console: Console, enabled: bool) -> Iterator[Live | None]:
    if not enabled:
        yield None
        return
    with Live(
        render(board), console=console, auto_refresh=False, transient=False, screen=False
    ) as live:
        yield live


async def refresh(live: Live, board: Board) -> None:
    while True:
        live.update(render(board, height=live.console.height), refresh=True)
        await asyncio.sleep(REFRESH_S)


def down(root: pathlib.Path, env: Mapping[str, str]) -> tuple[bool, str]:
    """``python -m sandbox --dir root down``, then check every recorded process is gone."""
    try:
        state = sandbox_control.State.load(sandbox_stack.Layout(root))
    except sandbox_control.StackError:
        state = None
    handles = [r.handle for r in state.running] if state is not None else []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", "--dir", str(root), "down"],
            env=dict(env),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=DOWN_TIMEOUT_S,
            start_new_session=True,  # a second Ctrl-C does not cut the teardown short
        )
    except subprocess.TimeoutExpired:
        return False, f"`python -m sandbox --dir {root} down` did not finish in {DOWN_TIMEOUT_S:g}s"
    left = [h.pid for h in handles if sandbox_processes.alive(h)]
    if done.returncode != 0 or left:
        return False, (
            f"expected `python -m sandbox --dir {root} down` to stop everything; it exited with "
            f"{done.returncode} and left pids {left} running:\n{done.stdout}{done.stderr}"
        )
    if not handles:
        return True, "nothing of the stack is left running"
    return True, f"stopped everything the demo started ({len(handles)} processes)"


async def amain(args: argparse.Namespace, root: pathlib.Path, temporary: bool) -> int:
    console = Console()
    plain = args.plain or not console.is_terminal or console.is_dumb_terminal
    board = Board()
    if plain:
        board.out = lambda line: print(line, flush=True)
    demo = Demo(root, board, args.pod_network, args.deadline)

    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(sig: int) -> None:
        if not received:  # the first one stops the demo; the teardown is not interrupted
            task.cancel()
        received.append(sig)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    report = demo.report
    try:
        with live_view(board, console, not plain) as live:
            refresher = asyncio.create_task(refresh(live, board)) if live else None
            try:
                await demo.run()
            except DemoFailure as exc:
                report.failure = str(exc)
                board.action(f"FAILED: {exc}", style="bold red")
            except asyncio.CancelledError:
                if not received:
                    raise
                task.uncancel()
                name = signal.Signals(received[0]).name
                report.failure = f"interrupted by {name}"
                board.action(f"interrupted by {name}; stopping", style="bold red")
            finally:
                if refresher is not None and live is not None:
                    refresher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await refresher
                    # the last frame leaves room for the summary below it on the screen
                    height = max(MIN_FINAL_HEIGHT, live.console.height - SUMMARY_LINES)
                    live.update(render(board, height=height), refresh=True)
    finally:  # also after a bug: leave nothing running
        report.slack_messages = len(demo.sink.payloads)
        report.wall_s = time.monotonic() - board.started
        await demo.close()
        await demo.stop_up()
        print("", flush=True)
        for line in summary(report):
            print(line, flush=True)
        stopped = await asyncio.to_thread(teardown, demo, args.keep, temporary, report)
    if received:
        return 128 + received[0]
    return 0 if report.ok and stopped else 1


def teardown(demo: Demo, keep: bool, temporary: bool, report: Report) -> bool:
    """Stop the stack (or, with ``keep``, say how to use it); False when something stays."""
    root = demo.root
    if keep and (root / "env").exists():
        for line in keep_instructions(root):
            print(line, flush=True)
        return True
    if demo.stack_started:
        print(f"stopping the stack: python -m sandbox --dir {_shown_path(root)} down", flush=True)
        stopped, message = down(root, demo.env)
        print(message, flush=True)
        if not stopped:
            return False
    if not report.ok and not report.failure.startswith("interrupted"):
        print(f"logs kept in {_shown_path(root / 'logs')}", flush=True)
    elif temporary:
        shutil.rmtree(root, ignore_errors=True)
    return True


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.demo",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=pathlib.Path,
        help="state directory of the demo's stack, new or empty (default: a temporary one)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack running at the end and print how to use and stop it",
    )
    parser.add_argument("--plain", action="store_true", help="plain lines instead of the live view")
    parser.add_argument(
        "--pod-network",
        type=ipaddress.IPv4Network,
        default=random_pod_network(),
        help="loopback CIDR for the stack's pod IPs (default: a free one of 127.20-39.0.0/16)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEADLINE_S,
        help="seconds the demo may take, teardown excluded (default %(default)g)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if shutil.which("kubectl") is None:
        print("demo: kubectl is not on PATH; `make setup` installs it", file=sys.stderr)
        return 2
    if args.dir is None:
        root = pathlib.Path(tempfile.mkdtemp(prefix="sluice-demo-"))
        temporary = True
    else:
        root = args.dir.resolve()
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            print(
                f"demo: --dir {args.dir} is not a new or empty directory; the demo starts from a "
                f"clean cluster. Stop a stack that runs there with `python -m sandbox --dir "
                f"{args.dir} down`, then remove the directory or choose another.",
                file=sys.stderr,
            )
            return 2
        root.mkdir(parents=True, exist_ok=True)
        temporary = False
    return asyncio.run(amain(args, root, temporary))


if __name__ == "__main__":
    sys.exit(main())

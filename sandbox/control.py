"""``sandbox up / down / status``: run what ``sandbox.stack.plan`` describes, in the background.

``up`` starts each ``Component`` detached (``sandbox.processes``), in plan order, waiting for a
component's ``needs`` before starting it, records every process in ``state.json`` as soon as it
runs (so a failed or interrupted ``up`` — and ``down`` — can always stop it), waits until every
readiness check passes, creates the pre-installed objects (``sandbox.seeding``), checks that the
name proxy resolves them, and writes the env file last. Any failure names the component and
its log (with its last lines) and stops what was started. With every recorded process alive,
``up`` says so and returns 0 (idempotent); with only some alive it refuses and points to
``down``. ``up`` and ``down`` hold an flock on ``<dir>/lock``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import ipaddress
import json
import os
import pathlib
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

from sandbox import processes, seeding, stack, standalone
from sandbox import prometheus as sandbox_prometheus
from sandbox.stack import Component, Layout

READY_TIMEOUT = 60.0  # seconds ``up`` waits for everything to answer
POLL_INTERVAL = 0.05  # seconds between readiness probes
LOG_TAIL_LINES = 20
# Proxy variables are not inherited by the stack's processes: a shell that sourced an old env
# file must not route the stack's own traffic through a name proxy that is gone. (Components
# that need the name proxy, like the webhook-runner later, get HTTP_PROXY in their own env.)
PROXY_VARIABLES = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    | {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
)


class StackError(Exception):
    """The stack could not be brought up (the message names the component and its log)."""


@dataclasses.dataclass(frozen=True)
class Running:
    name: str
    handle: processes.Handle
    log: str
    url: str
    argv: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.handle.pid,
            "start_ticks": self.handle.start_ticks,
            "log": self.log,
            "url": self.url,
            "argv": list(self.argv),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Running:
        return cls(
            str(data["name"]),
            processes.Handle(int(data["pid"]), int(data.get("start_ticks", 0))),
            str(data.get("log", "")),
            str(data.get("url", "")),
            tuple(data.get("argv", ())),
        )


@dataclasses.dataclass
class State:
    ports: dict[str, int]
    pod_network: str
    running: list[Running] = dataclasses.field(default_factory=list)

    def save(self, layout: Layout) -> None:
        data = {
            "ports": self.ports,
            "pod_network": self.pod_network,
            "processes": [r.to_json() for r in self.running],
        }
        _write_atomic(layout.state, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, layout: Layout) -> State | None:
        try:
            data = json.loads(layout.state.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StackError(
                f"unreadable state file {layout.state}: {e}; remove it and the processes by hand"
            ) from e
        return cls(
            {str(k): int(v) for k, v in data.get("ports", {}).items()},
            str(data.get("pod_network", "")),
            [Running.from_json(item) for item in data.get("processes", [])],
        )


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    layout.root.mkdir(parents=True, exist_ok=True)
    with layout.lock.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tail(path: pathlib.Path | str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"  # logs appear as they are written
    return env


# -- commands ---------------------------------------------------------------------------------


def _wait_ready(
    components: Sequence[Component], state: State, deadline: float, timeout: float, out: TextIO
) -> None:
    """Poll the components' checks until all pass; ``StackError`` naming the first that exits or
    is not ready at ``deadline`` (``time.monotonic``; ``timeout`` is the budget it came from)."""
    by_name = {r.name: r for r in state.running}
    pending = list(components)
    while pending:
        for component in list(pending):
            running = by_name[component.name]
            if component.ready():
                pending.remove(component)
                print(f"  {component.name:<11} ready  {component.url}", file=out, flush=True)
            elif not processes.alive(running.handle):
                raise StackError(
                    f"{component.name} exited during start-up; its log {running.log} ends with:\n{_tail(running.log)}"
                )
        if pending and time.monotonic() > deadline:
            component = pending[0]
            log = by_name[component.name].log
            raise StackError(
                f"{component.name} did not become ready within {timeout:g}s ({component.ready}); "
                f"its log {log} ends with:\n{_tail(log)}"
            )
        if pending:
            time.sleep(POLL_INTERVAL)  # a polling period between probes


def _alive_report(state: State) -> tuple[list[Running], list[Running]]:
    up = [r for r in state.running if processes.alive(r.handle)]
    down = [r for r in state.running if not processes.alive(r.handle)]
    return up, down


def up(
    root: pathlib.Path = stack.DEFAULT_DIR,
    *,
    free_ports: bool = False,
    pod_network: ipaddress.IPv4Network | None = None,
    timeout: float = READY_TIMEOUT,
    out: TextIO = sys.stdout,
    sluice_env: Mapping[str, str] | None = None,
    standalone_mode: bool = False,
) -> int:
    """Start the stack in the background and return once everything answers (0), or say that
    it already runs (0); 1 with a message naming the component and its log when it fails.
    With ``sluice_env`` (even empty) Sluice's five services run too, with those variables.
    ``standalone_mode``: the standalone stack (``sandbox.standalone``) instead.
    ``pod_network``: None picks one no other running stack uses (``stack.choose_pod_network``);
    a given one that another stack uses fails at once, before anything starts."""
    layout = Layout(root.resolve())
    with _locked(layout):
        try:
            previous = State.load(layout)
        except StackError as e:
            print(f"sandbox: {e}", file=sys.stderr)
            return 1
        if previous is not None:
            alive, dead = _alive_report(previous)
            if alive and not dead:
                print(
                    f"sandbox is already running ({len(alive)} processes); env: {layout.env}",
                    file=out,
                )
                return 0
            if alive:
                names = ", ".join(f"{r.name} (log {r.log})" for r in dead)
                print(
                    f"sandbox is partly running: {names} stopped. Run `python -m sandbox down` "
                    "(make sandbox-down), then up again.",
                    file=sys.stderr,
                )
                return 1
            layout.state.unlink(missing_ok=True)  # left over from a stack that died
        layout.env.unlink(missing_ok=True)

        if standalone_mode:
            pod_network = pod_network or stack.DEFAULT_POD_NETWORK  # no pods: nothing to claim
        else:
            try:
                pod_network = stack.choose_pod_network(pod_network)
            except stack.PodNetworkError as e:
                print(f"sandbox: {e}", file=sys.stderr)
                return 1
        ports = stack.choose_ports(free_ports, standalone.PORTS if standalone_mode else None)
        state = State(ports, str(pod_network))
        try:
            if standalone_mode:
                _start_standalone(layout, state, timeout, out, sluice_env)
            else:
                _start(layout, state, pod_network, timeout, out, sluice_env)
        except (StackError, seeding.SeedError, sandbox_prometheus.PrometheusError, OSError) as e:
            print(f"sandbox: {e}", file=sys.stderr)
            print("sandbox: stopping what was started", file=sys.stderr)
            _stop(layout, state, out=sys.stderr)
            return 1
        except BaseException:  # Ctrl-C or a bug: leave nothing behind
            _stop(layout, state, out=sys.stderr)
            raise
    env = stack.environment(layout, ports, pod_network)
    shown = ["KUBECONFIG", "NATS_URL", "PROMETHEUS_URL", "GATEWAY_URL", "HTTP_PROXY"]
    if standalone_mode:
        env = standalone.environment(layout, ports)
        shown = ["NATS_URL", "PROMETHEUS_URL", "GATEWAY_URL", "APISIX_ADMIN_URL"]
        shown += ["APISIX_ADMIN_KEY_FILE", "STABLE_NODE", "CANARY_NODE"]
    print(f"sandbox is up; `source {layout.env}`:", file=out)
    for key in (*shown, "LOADTESTER_PORT"):
        print(f"  {key}={env[key]}", file=out)
    return 0


def _start(
    layout: Layout,
    state: State,
    pod_network: ipaddress.IPv4Network,
    timeout: float,
    out: TextIO,
    sluice_env: Mapping[str, str] | None = None,
) -> None:
    ports = state.ports
    layout.kubeconfig.unlink(missing_ok=True)
    layout.prometheus_config.write_text(stack.prometheus_config(ports))
    components = stack.plan(layout, ports, pod_network)
    by_name = {c.name: c for c in components}
    base_env = _base_env()
    deadline = time.monotonic() + timeout
    started_at = time.time()
    ready: set[str] = set()
    print(f"sandbox: starting in {layout.root}", file=out, flush=True)
    for component in components:
        waiting = [by_name[n] for n in component.needs if n not in ready]
        _wait_ready(waiting, state, deadline, timeout, out)
        ready.update(c.name for c in waiting)
        _spawn(layout, state, component, base_env)
    _wait_ready([c for c in components if c.name not in ready], state, deadline, timeout, out)

    seeding.seed(by_name["kube"].url, ports)
    _wait_ready(stack.wiring(ports, started_at), state, deadline, timeout, out)
    if sluice_env is not None:
        services = stack.sluice_plan(layout, ports, sluice_env)
        for component in services:
            _spawn(layout, state, component, base_env)
        _wait_ready(services, state, deadline, timeout, out)
    _write_atomic(layout.env, stack.render_env(stack.environment(layout, ports, pod_network)))


def _start_standalone(
    layout: Layout,
    state: State,
    timeout: float,
    out: TextIO,
    sluice_env: Mapping[str, str] | None = None,
) -> None:
    ports = state.ports
    layout.prometheus_config.write_text(stack.prometheus_config(ports))
    standalone.write_admin_key(layout)
    components = standalone.plan(layout, ports)
    base_env = _base_env()
    deadline = time.monotonic() + timeout
    started_at = time.time()
    print(f"sandbox: starting standalone in {layout.root}", file=out, flush=True)
    for component in components:
        _spawn(layout, state, component, base_env)
    _wait_ready(components, state, deadline, timeout, out)
    _wait_ready(standalone.wiring(ports, started_at), state, deadline, timeout, out)
    if sluice_env is not None:
        services = standalone.sluice_plan(layout, ports, sluice_env)
        for component in services:
            _spawn(layout, state, component, base_env)
        _wait_ready(services, state, deadline, timeout, out)
    _write_atomic(layout.env, stack.render_env(standalone.environment(layout, ports)))


def deploy(
    root: pathlib.Path,
    app: str,
    version: str,
    env: Sequence[tuple[str, str]] = (),
    *,
    timeout: float = READY_TIMEOUT,
    out: TextIO = sys.stdout,
) -> int:
    """Restart app ``app`` of the running standalone stack with ``version`` and ``env`` (only
    those variables) on the same port; 0 once it answers, 1 when it cannot."""
    layout = Layout(root.resolve())
    with _locked(layout):
        try:
            state = State.load(layout)
        except StackError as e:
            print(f"sandbox: {e}", file=sys.stderr)
            return 1
        old = next((r for r in state.running if r.name == app), None) if state else None
        if state is None or old is None:
            print(
                f"sandbox: no app {app!r} in {layout.root}: is the sandbox up with --standalone?",
                file=sys.stderr,
            )
            return 1
        component = standalone.app_component(app, state.ports[f"app_{app}"], version, env)
        processes.stop_all([old.handle])
        state.running.remove(old)
        state.save(layout)
        try:
            _spawn(layout, state, component, _base_env())
            _wait_ready([component], state, time.monotonic() + timeout, timeout, out)
        except StackError as e:
            print(f"sandbox: {e}", file=sys.stderr)
            return 1
    print(f"{app} now runs version {version} at {component.url}", file=out)
    return 0


def _spawn(layout: Layout, state: State, component: Component, base_env: dict[str, str]) -> None:
    log = layout.log(component.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        f.write(f"--- sandbox up {stamp}: {shlex.join(component.argv)}\n")
    try:
        handle = processes.spawn(
            component.argv, log, {**base_env, **component.env}, stack.REPO_ROOT
        )
    except OSError as e:
        raise StackError(f"cannot start {component.name} ({component.argv[0]}): {e}") from e
    state.running.append(Running(component.name, handle, str(log), component.url, component.argv))
    state.save(layout)


def _stop(layout: Layout, state: State, out: TextIO) -> None:
    handles = [r.handle for r in reversed(state.running)]
    killed = processes.stop_all(handles)
    for running in state.running:
        how = "killed" if running.handle in killed else "stopped"
        print(f"  {running.name:<11} {how} (pid {running.handle.pid})", file=out, flush=True)
    layout.env.unlink(missing_ok=True)
    layout.state.unlink(missing_ok=True)


def down(root: pathlib.Path = stack.DEFAULT_DIR, *, out: TextIO = sys.stdout) -> int:
    """Stop every process ``up`` started (SIGTERM, deadline, SIGKILL); 0 also when none runs."""
    layout = Layout(root.resolve())
    if not layout.root.exists():
        print("sandbox is not running", file=out)
        return 0
    with _locked(layout):
        try:
            state = State.load(layout)
        except StackError as e:
            print(f"sandbox: {e}", file=sys.stderr)
            return 1
        if state is None or not state.running:
            layout.env.unlink(missing_ok=True)
            print("sandbox is not running", file=out)
            return 0
        print(f"sandbox: stopping {layout.root}", file=out, flush=True)
        try:
            _stop(layout, state, out)
        except RuntimeError as e:
            print(f"sandbox: {e}", file=sys.stderr)
            return 1
    return 0


def status(root: pathlib.Path = stack.DEFAULT_DIR, *, out: TextIO = sys.stdout) -> int:
    """Print each recorded process: 0 all running, 1 partly, 3 not running (LSB's codes)."""
    layout = Layout(root.resolve())
    try:
        state = State.load(layout)
    except StackError as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 1
    if state is None or not state.running:
        print(f"sandbox is not running ({layout.root})", file=out)
        return 3
    alive, dead = _alive_report(state)
    print(f"sandbox in {layout.root} (pod network {state.pod_network}):", file=out)
    print(f"  {'NAME':<11} {'PID':>7}  {'STATE':<8} {'URL':<28} LOG", file=out)
    for r in state.running:
        word = "running" if r in alive else "stopped"
        print(f"  {r.name:<11} {r.handle.pid:>7}  {word:<8} {r.url:<28} {r.log}", file=out)
    print(f"  loadtester port {state.ports.get('loadtester')} (reserved)", file=out)
    if layout.env.exists():
        print(f"env: {layout.env}", file=out)
    if dead:
        return 1
    return 0

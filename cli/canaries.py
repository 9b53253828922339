"""``sluice get canaries`` and ``sluice describe canary``: what a canary is doing, at a glance.

Both read the Kubernetes API (``KUBECONFIG`` or ``--kubeconfig``, like kubectl) — or, with
``--standalone`` (default when ``SLUICE_MODE=standalone``), the canaries kept on the bus in
standalone mode (``sluice_canaries``; ``describe`` then shows no Kubernetes Events): the Canary's
spec and status — phase, weight, failed checks, iterations, each metric's last value against
its threshold, the gate it waits at — and, for ``describe``, the Events Sluice recorded on it.
The rendering is pure (``table``, ``summary``, ``describe``) and tested without a server.

Exit status: 0; 1 when the Canary is not found or the API cannot be reached (the reason on
stderr); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import nats.js.errors
import yaml

from cli import connecting
from libs import errors, settings, streams
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from libs.model import standalone, strategy
from libs.standalone import store as canary_store

Obj = dict[str, Any]
EXIT_OK = 0
EXIT_FAILED = 1
RECENT_EVENTS = 15


def register(subparsers: Any) -> None:
    """Add ``get canaries`` and ``describe canary``."""
    get = subparsers.add_parser("get", help="list canaries with their progress")
    get_kinds = get.add_subparsers(dest="kind", metavar="canaries", required=True)
    listing = get_kinds.add_parser(
        "canaries", aliases=["canary"], help="phase, weight, checks and metric values"
    )
    _common(listing)
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    listing.add_argument(
        "-o", "--output", choices=("wide", "json", "yaml"), help="more columns, or the objects"
    )
    listing.set_defaults(handler=_run_get)

    describe = subparsers.add_parser("describe", help="one canary in detail, with its events")
    describe_kinds = describe.add_subparsers(dest="kind", metavar="canary", required=True)
    one = describe_kinds.add_parser("canary", aliases=["canaries"], help="a canary by name")
    one.add_argument("name", help="the Canary's name")
    _common(one)
    one.set_defaults(handler=_run_describe)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    parser.add_argument(
        "--standalone",
        action="store_true",
        default=os.environ.get("SLUICE_MODE", "") == settings.STANDALONE,
        help="read the standalone canaries on the bus (default when SLUICE_MODE=standalone)",
    )
    connecting.add_nats_arguments(parser)
    parser.add_argument(
        "--kubeconfig",
        default=default_kubeconfig(),
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )


def default_namespace(args: argparse.Namespace) -> str:
    """``-n``, else ``default`` in standalone mode (``SLUICE_MODE=standalone``: no kubeconfig
    to take it from), else the kubeconfig's current namespace, as kubectl picks it."""
    if args.namespace:
        return str(args.namespace)
    if os.environ.get("SLUICE_MODE", "") == settings.STANDALONE:
        return standalone.DEFAULT_NAMESPACE
    return kubernetes.current_namespace(args.kubeconfig)


def default_kubeconfig() -> str:
    """kubectl's choice: the first file of ``$KUBECONFIG``, else ``~/.kube/config``."""
    listed = os.environ.get("KUBECONFIG", "")
    if listed:
        return listed.split(os.pathsep)[0]
    return os.path.expanduser("~/.kube/config")


# --------------------------------------------------------------------------- reading


async def _read(kubeconfig: str, work: Any) -> Any:
    cfg = kubernetes.Config(
        kubeconfig=kubeconfig, setting="--kubeconfig / KUBECONFIG", agent="sluice-cli"
    )
    kube = await kubernetes.Kube.connect(cfg)
    try:
        return await work(kube)
    finally:
        await kube.close()


def _failed(message: str) -> int:
    print(f"sluice: {message}", file=sys.stderr)
    return EXIT_FAILED


def _namespace(args: argparse.Namespace) -> str:
    if args.standalone:
        return str(args.namespace or standalone.DEFAULT_NAMESPACE)
    return default_namespace(args)


async def _from_bus(args: argparse.Namespace, namespace: str | None) -> list[Obj]:
    """The standalone canaries of ``namespace`` (None: all) as Kubernetes-style objects."""
    nc = await connecting.connect(args)
    try:
        kv = await nc.jetstream().key_value(streams.CANARIES.name)
        store = canary_store.CanaryStore(kv)
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        found = []
        for key in keys:
            ns, _, name = key.partition(".")
            if namespace is not None and ns != namespace:
                continue
            observed = await store.get(ns, name)
            if observed is not None and observed.canary is not None and observed.apisix:
                obj = msgspec.to_builtins(observed.canary)
                obj["kind"] = standalone.KIND
                obj["metadata"]["resourceVersion"] = observed.resource_version
                found.append(obj)
        return found
    except nats.js.errors.BucketNotFoundError:
        return []
    finally:
        await nc.close()


def _run_get(args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else _namespace(args)

    async def work(kube: kubernetes.Kube) -> list[Obj]:
        return (await kube.list(kubernetes.CANARIES, namespace)).items

    try:
        if args.standalone:
            items = asyncio.run(_from_bus(args, namespace))
        else:
            items = asyncio.run(_read(args.kubeconfig, work))
    except (connecting.CliError, errors.SluiceError) as exc:
        return _failed(str(exc))
    items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    if args.output in ("json", "yaml"):
        document = {"apiVersion": "v1", "kind": "List", "items": items}
        text = json.dumps(document, indent=2) if args.output == "json" else yaml.safe_dump(document)
        print(text.rstrip())
        return EXIT_OK
    if not items:
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        print(f"No canaries found in {where}.", file=sys.stderr)
        return EXIT_OK
    print(table(items, all_namespaces=namespace is None, wide=args.output == "wide"))
    return EXIT_OK


def _run_describe(args: argparse.Namespace) -> int:
    namespace = _namespace(args)

    async def work(kube: kubernetes.Kube) -> tuple[Obj, list[Obj]]:
        canary = await kube.get(kubernetes.CANARIES, namespace, args.name)
        events = (await kube.list(kubernetes.EVENTS, namespace)).items
        return canary, events

    try:
        if args.standalone:
            found = [
                obj
                for obj in asyncio.run(_from_bus(args, namespace))
                if obj["metadata"]["name"] == args.name
            ]
            if not found:
                raise errors.NotFound(args.name)
            canary, events = found[0], []
        else:
            canary, events = asyncio.run(_read(args.kubeconfig, work))
    except errors.NotFound:
        return _failed(f'canary "{args.name}" not found in namespace {namespace}')
    except (connecting.CliError, errors.SluiceError) as exc:
        return _failed(str(exc))
    print(describe(canary, events_of(canary, events)))
    return EXIT_OK


# --------------------------------------------------------------------------- rendering


def _status(obj: Obj) -> Obj:
    return dict(obj.get("status") or {})


def _analysis(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    return dict(spec.get("analysis") or spec.get("canaryAnalysis") or {})


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def metric_values(obj: Obj) -> str:
    """``name=value`` for each metric of the last analysis step, ``!`` after a failed one."""
    shown = []
    for metric in _status(obj).get("metrics") or []:
        mark = "" if metric.get("passed") else "!"
        shown.append(f"{metric.get('name')}={_number(metric.get('value'))}{mark}")
    return " ".join(shown) or "-"


def progress(obj: Obj) -> str:
    """``iteration 2/10`` for blue/green and A/B, else the canary weight."""
    status, analysis = _status(obj), _analysis(obj)
    if analysis.get("iterations"):
        return f"{status.get('iterations') or 0}/{analysis['iterations']}"
    return str(status.get("canaryWeight") or 0)


def waiting_at(obj: Obj) -> str:
    """The confirm-* gate holding the canary, or ``""``."""
    for condition in _status(obj).get("conditions") or []:
        if condition.get("type") == "Gate" and condition.get("status") == "False":
            return str(condition.get("reason") or "")
    return ""


def summary(obj: Obj, *, wide: bool = False) -> dict[str, str]:
    """One canary as ``get canaries`` shows it."""
    status, analysis = _status(obj), _analysis(obj)
    threshold = analysis.get("threshold") or 1
    row = {
        "NAMESPACE": str(obj["metadata"].get("namespace") or ""),
        "NAME": str(obj["metadata"]["name"]),
        "STATUS": str(status.get("phase") or "-"),
        "WEIGHT": progress(obj) if not analysis.get("iterations") else "-",
        "ITERATIONS": progress(obj) if analysis.get("iterations") else "-",
        "FAILEDCHECKS": f"{status.get('failedChecks') or 0}/{threshold}",
        "METRICS": metric_values(obj),
        "WAITING": waiting_at(obj) or "-",
        "LASTTRANSITIONTIME": str(status.get("lastTransitionTime") or "-"),
    }
    if wide:
        spec = obj.get("spec") or {}
        row["SUSPENDED"] = str(bool(spec.get("suspend"))).lower()
        row["INTERVAL"] = str(analysis.get("interval") or "60s")
        row["STEPWEIGHT"] = _number(analysis.get("stepWeight"))
        row["MAXWEIGHT"] = _number(analysis.get("maxWeight"))
    return row


def table(items: Iterable[Obj], *, all_namespaces: bool = False, wide: bool = False) -> str:
    """kubectl's layout: upper-case headers, columns padded, three spaces apart."""
    rows = [summary(obj, wide=wide) for obj in items]
    columns = [c for c in rows[0] if all_namespaces or c != "NAMESPACE"] if rows else []
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["   ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["   ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def events_of(canary: Obj, events: Sequence[Obj]) -> list[Obj]:
    """The Events recorded on ``canary`` (by uid when they carry one), oldest first."""
    meta = canary["metadata"]
    mine = []
    for event in events:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") != "Canary" or involved.get("name") != meta["name"]:
            continue
        if involved.get("uid") and meta.get("uid") and involved["uid"] != meta["uid"]:
            continue
        mine.append(event)
    return sorted(mine, key=_event_time)


def _event_time(event: Obj) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _strategy(obj: Obj) -> str:
    try:
        parsed = canary_model.parse_canary(obj)
    except errors.InvalidInput as exc:
        return f"invalid ({str(exc).splitlines()[0]})"
    analysis = parsed.get_analysis()
    kind = strategy.detect(analysis)
    if kind is strategy.Strategy.CANARY:
        steps = strategy.weight_schedule(analysis)
        return f"canary, weights {', '.join(map(str, steps)) or '-'}"
    return f"{kind}, {analysis.iterations_or_zero()} iterations"


def _threshold(metric: Obj) -> str:
    low, high = metric.get("min"), metric.get("max")
    if low is not None and high is not None:
        return f"{_number(low)} .. {_number(high)}"
    if low is not None:
        return f">= {_number(low)}"
    if high is not None:
        return f"<= {_number(high)}"
    return "-"


def describe(obj: Obj, events: Sequence[Obj]) -> str:
    """``describe canary``: spec summary, status, metrics, gates, conditions, recent events."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    status, analysis = _status(obj), _analysis(obj)
    target = spec.get("targetRef") or {}
    route = spec.get("routeRef") or {}
    lines = [
        f"Name:          {meta['name']}",
        f"Namespace:     {meta.get('namespace', '')}",
        f"Target:        {target.get('kind', '?')}/{target.get('name', '?')}",
        f"Route:         {route.get('kind', 'ApisixRoute')}/{route.get('name', '-')}",
        f"Strategy:      {_strategy(obj)}",
        f"Interval:      {analysis.get('interval', '60s')}",
        f"Phase:         {status.get('phase') or '-'}",
    ]
    if analysis.get("iterations"):
        lines.append(f"Iterations:    {progress(obj)}")
    else:
        lines.append(f"Weight:        {status.get('canaryWeight') or 0}")
    threshold = analysis.get("threshold") or 1
    lines.append(f"Failed checks: {status.get('failedChecks') or 0} of {threshold}")
    lines.append(f"Since:         {status.get('lastTransitionTime') or '-'}")
    gate = next((c for c in status.get("conditions") or [] if c.get("type") == "Gate"), None)
    if gate is not None and gate.get("status") == "False":
        lines.append(f"Waiting:       {gate.get('reason')}: {gate.get('message')}")
    held = next((c for c in status.get("conditions") or [] if c.get("type") == "Paused"), None)
    if held is not None and held.get("status") == "True":
        lines.append(f"Paused:        {held.get('message')}")
    control = status.get("control")
    if isinstance(control, dict) and control.get("action"):
        lines.append(f"Last request:  {request_line(control)}")
    metrics = status.get("metrics") or []
    if metrics:
        lines.append("Metrics (last step):")
        rows = [
            {
                "NAME": str(m.get("name")),
                "VALUE": _number(m.get("value")) if m.get("value") is not None else "no values",
                "RANGE": _threshold(m),
                "RESULT": ("dry run, " if m.get("dryRun") else "")
                + ("passed" if m.get("passed") else "failed"),
            }
            for m in metrics
        ]
        lines += _indented(rows)
    conditions = status.get("conditions") or []
    if conditions:
        lines.append("Conditions:")
        lines += _indented(
            [
                {
                    "TYPE": str(c.get("type")),
                    "STATUS": str(c.get("status")),
                    "REASON": str(c.get("reason") or ""),
                    "MESSAGE": str(c.get("message") or ""),
                }
                for c in conditions
            ]
        )
    lines.append("Events:")
    recent = list(events)[-RECENT_EVENTS:]
    if not recent:
        lines.append("  <none>")
    else:
        lines += _indented(
            [
                {
                    "TYPE": str(e.get("type") or ""),
                    "COUNT": str(e.get("count") or 1),
                    "LAST SEEN": _event_time(e),
                    "MESSAGE": str(e.get("message") or ""),
                }
                for e in recent
            ]
        )
    return "\n".join(lines)


def request_line(control: Obj) -> str:
    """``status.control`` in one line: "abort by alice at <t> (p99 looks bad): rolled back at <t>"."""
    gate = f" {control['gate']}" if control.get("gate") else ""
    reason = f" ({control['reason']})" if control.get("reason") else ""
    asked = f"{control['action']}{gate} by {control.get('by') or 'someone'}"
    asked += f" at {control.get('requestedAt') or '?'}{reason}"
    if not control.get("handledAt"):
        return f"{asked}: pending"
    return f"{asked}: {control.get('outcome') or 'done'} at {control['handledAt']}"


def _indented(rows: list[dict[str, str]]) -> list[str]:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    out = ["  " + "   ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    out += ["  " + "   ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return out

"""``python -m sandbox up | down | status | deploy``: the sandbox stack in the background.

up      start NATS (JetStream), Prometheus (scraping the gateway every 1s), the Kubernetes
        simulator, the APISIX gateway simulator and the in-cluster name proxy as detached
        processes (logs in <dir>/logs/<name>.log); create namespace apisix with Service
        apisix-gateway (port 80 -> the gateway) and namespace test with Service
        flagger-loadtester (port 80 -> 127.0.0.1:$LOADTESTER_PORT); return once everything
        answers (Prometheus has scraped the gateway, the proxy resolves apisix-gateway.apisix),
        then `source <dir>/env`. Already running: says so, exits 0. On failure: names the
        component and its log, stops what it started, exits 1.
up --standalone
        APISIX without Kubernetes instead: NATS, Prometheus, the gateway serving APISIX's
        Admin API (key generated into <dir>/apisix-admin-key, mode 0600) and two apps,
        stable and canary (version 6.0.0), on loopback ports; the env file names
        APISIX_ADMIN_URL, APISIX_ADMIN_KEY_FILE, STABLE_NODE, CANARY_NODE. With
        --with-sluice the services run with SLUICE_MODE=standalone.
deploy APP --version V [--env KEY=VALUE]...
        (standalone) restart app stable or canary with that version and environment on the
        same port, as a new version deployed behind its upstream.
down    stop everything up started (SIGTERM, 10s, SIGKILL); nothing running: exits 0.
status  list the processes (exit 0 running, 1 partly, 3 not running).
kubeconfig --service-account NS:NAME [--out PATH]
        write a kubeconfig acting as that ServiceAccount against the running stack's
        Kubernetes API (default <dir>/kubeconfig-NS-NAME) and print its path: RBAC applies
        to it (the stack's own kubeconfig is cluster-admin).
fault NAME [--for 10s] [--verb VERB]... [--path PREFIX]... [--pod [NS/]POD]... [-n NS]
        a test control (sandbox.faults): kube-503 / kube-timeout (the Kubernetes API answers
        503 / holds requests for that long, optionally only those verbs and path prefixes),
        drop-watches (ends every open watch; with --for, also every watch opened for that
        long, within a second), pod-unready (the kubelet reports those pods not
        ready for that long, whatever their probes say; --pod is NAME in -n NS, default
        "default", or NS/NAME), metrics-gone (the gateway's Prometheus endpoint answers 503
        for that long), clear (everything off, on both).

Ports: each has a fixed default, used when it is free on 127.0.0.1, else the OS picks a free
one (--free-ports: always the OS). Defaults: NATS 4222, Prometheus 9090, Kubernetes API 6443,
gateway 9080 (metrics 9091, Admin API 9180 standalone), name proxy 3128, loadtester 8080,
standalone apps 9898 (stable) and 9899 (canary); with --with-sluice the
services' health ports 8081-8085 (watcher, analyzer, traffic-shifter, webhook-runner, notifier).
The env file and `status` show the ports in use.

Environment: SANDBOX_DIR (state directory, default <repo>/.sandbox), SANDBOX_FREE_PORTS=1,
SANDBOX_POD_NETWORK (CIDR of pod IPs; default: the first of 127.42.0.0/16, 127.44-49.0.0/16
that no other running stack uses, so two stacks can run at once; a given one in use by another
stack fails at start).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import pathlib
import sys

import yaml

from sandbox import control, faults, stack
from sandbox.kube import config as kube_config


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=pathlib.Path,
        default=pathlib.Path(os.environ.get("SANDBOX_DIR") or stack.DEFAULT_DIR),
        help="state directory (env SANDBOX_DIR; default %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("up", help="start the stack in the background")
    start.add_argument(
        "--free-ports",
        action="store_true",
        default=_truthy(os.environ.get("SANDBOX_FREE_PORTS")),
        help="let the OS pick every port instead of trying the defaults (env SANDBOX_FREE_PORTS=1)",
    )
    start.add_argument(
        "--pod-network",
        type=ipaddress.IPv4Network,
        default=os.environ.get("SANDBOX_POD_NETWORK") or None,
        help="loopback CIDR for pod IPs (env SANDBOX_POD_NETWORK; default: the first free of "
        "127.42.0.0/16, 127.44-49.0.0/16)",
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=control.READY_TIMEOUT,
        help="seconds to wait for everything to answer (default %(default)g)",
    )
    start.add_argument(
        "--with-sluice",
        action="store_true",
        help="also run Sluice's five services against the stack (logs in <dir>/logs/sluice-*.log)",
    )
    start.add_argument(
        "--sluice-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for Sluice's services (repeatable; implies --with-sluice)",
    )
    start.add_argument(
        "--standalone",
        action="store_true",
        help="APISIX without Kubernetes: the gateway's Admin API and two apps (stable, canary)",
    )
    release = commands.add_parser(
        "deploy", help="(standalone) restart an app with another version or environment"
    )
    release.add_argument("app", choices=("stable", "canary"))
    release.add_argument("--version", required=True, help="the version it reports, e.g. 6.0.1")
    release.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the app, e.g. SANDBOX_ERROR_RATE=0.5 (repeatable)",
    )
    release.add_argument(
        "--timeout",
        type=float,
        default=control.READY_TIMEOUT,
        help="seconds to wait for it to answer (default %(default)g)",
    )
    commands.add_parser("down", help="stop everything up started")
    commands.add_parser("status", help="show what runs")
    identity = commands.add_parser(
        "kubeconfig", help="write a kubeconfig acting as a ServiceAccount (RBAC applies)"
    )
    identity.add_argument("--service-account", required=True, metavar="NS:NAME")
    identity.add_argument("--out", type=pathlib.Path, help="where to write it")
    fault = commands.add_parser("fault", help="switch a fault on (a test control)")
    fault.add_argument("name", choices=sorted({*faults.KUBE_FAULTS, *faults.GATEWAY_FAULTS}))
    fault.add_argument("--for", dest="seconds", type=_duration, help="how long, e.g. 10s")
    fault.add_argument("--verb", action="append", default=[], help="only these verbs")
    fault.add_argument("--path", action="append", default=[], help="only these path prefixes")
    fault.add_argument(
        "--pod", action="append", default=[], help="pod-unready: this pod (NAME or NS/NAME)"
    )
    fault.add_argument(
        "-n", "--namespace", default="default", help="namespace of --pod NAME (default: default)"
    )
    return parser.parse_args(argv)


def _duration(text: str) -> float:
    """``10s``, ``500ms``, ``2m`` or plain seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            text, factor = text.removesuffix(suffix), scale
            break
    else:
        factor = 1.0
    try:
        return float(text) * factor
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 10s or 500ms: {text!r}"
        ) from exc


def _fault(args: argparse.Namespace) -> int:
    state = control.State.load(stack.Layout(args.dir))
    if state is None:
        print(f"sandbox: no stack in {args.dir}: is the sandbox up?", file=sys.stderr)
        return 1
    body: dict[str, object] = {"fault": args.name}
    if args.seconds is not None:
        body["seconds"] = args.seconds
    if args.verb:
        body["verbs"] = [v.upper() for v in args.verb]
    if args.path:
        body["paths"] = args.path
    if args.pod:
        body["pods"] = [p if "/" in p else f"{args.namespace}/{p}" for p in args.pod]
    kube = f"http://{stack.HOST}:{state.ports['kube']}"
    gateway = f"http://{stack.HOST}:{state.ports['gateway_metrics']}"
    targets = {"metrics-gone": [gateway], "clear": [kube, gateway]}.get(args.name, [kube])
    try:
        for url in targets:
            print(json.dumps(faults.send(url, body)))
    except faults.FaultError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sandbox: cannot reach the stack: {exc}", file=sys.stderr)
        return 1
    return 0


def _service_account_kubeconfig(args: argparse.Namespace) -> int:
    namespace, sep, name = args.service_account.partition(":")
    if not sep or not namespace or not name:
        print("sandbox: --service-account expects NAMESPACE:NAME", file=sys.stderr)
        return 2
    admin = stack.Layout(args.dir).kubeconfig
    if not admin.exists():
        print(f"sandbox: no kubeconfig at {admin}: is the sandbox up?", file=sys.stderr)
        return 1
    server = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]["server"]
    out = args.out or args.dir / f"kubeconfig-{namespace}-{name}"
    print(kube_config.service_account_kubeconfig(out, server, namespace, name))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    match args.command:
        case "up":
            if args.pod_network is not None and not args.pod_network.subnet_of(
                ipaddress.IPv4Network("127.0.0.0/8")
            ):
                print("sandbox: --pod-network must be inside 127.0.0.0/8", file=sys.stderr)
                return 2
            sluice_env: dict[str, str] | None = None
            if args.with_sluice or args.sluice_env:
                sluice_env = {}
                for item in args.sluice_env:
                    name, sep, value = item.partition("=")
                    if not sep or not name:
                        print(
                            f"sandbox: --sluice-env expects NAME=VALUE, got {item!r}",
                            file=sys.stderr,
                        )
                        return 2
                    sluice_env[name] = value
            return control.up(
                args.dir,
                free_ports=args.free_ports,
                pod_network=args.pod_network,
                timeout=args.timeout,
                sluice_env=sluice_env,
                standalone_mode=args.standalone,
            )
        case "deploy":
            pairs = []
            for item in args.env:
                name, sep, value = item.partition("=")
                if not sep or not name:
                    print(f"sandbox: --env expects KEY=VALUE, got {item!r}", file=sys.stderr)
                    return 2
                pairs.append((name, value))
            return control.deploy(args.dir, args.app, args.version, pairs, timeout=args.timeout)
        case "down":
            return control.down(args.dir)
        case "kubeconfig":
            return _service_account_kubeconfig(args)
        case "fault":
            return _fault(args)
        case _:
            return control.status(args.dir)


if __name__ == "__main__":
    sys.exit(main())

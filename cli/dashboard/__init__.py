"""``sluice dashboard``: a live web page of every canary, read from the bus.

It follows the ``sluice_canaries`` KV bucket and the ``SLUICE_EVENTS`` stream (no Kubernetes
access needed) and shows each canary's phase, weight and its history, metrics against their
thresholds, the gate it waits at and its recent events. It is read-only unless started with
``--allow-actions``, which adds promote / abort / approve / reject / pause / resume / retry
buttons that send control requests to the analyzer as ``--as`` (default ``$SLUICE_USER``, else
``<login>@<host>``). It listens on 127.0.0.1:3100 (the port Argo Rollouts' dashboard uses) unless told otherwise (``--listen``).

Exit status: 0 when stopped with Ctrl-C or SIGTERM; 1 when NATS cannot be reached or the
address cannot be listened on (the reason on stderr); 2 for usage errors.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli import connecting

DEFAULT_LISTEN = "127.0.0.1:3100"


def register(subparsers: Any) -> None:
    """Add ``dashboard``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dashboard", help="a live web dashboard of every canary (read-only by default)"
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to serve the page (default: {DEFAULT_LISTEN}; port 0: any free port)",
    )
    parser.add_argument(
        "--allow-actions",
        action="store_true",
        help="show promote / abort / approve / reject / pause / resume / retry buttons",
    )
    connecting.add_nats_arguments(parser)
    parser.add_argument(
        "--as",
        dest="as_user",
        metavar="NAME",
        help="who the control requests come from (default: $SLUICE_USER, else login@host)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from cli.dashboard import server  # aiohttp and nats only when the command runs

    return server.run(args)

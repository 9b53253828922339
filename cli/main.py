"""The ``sluice`` command line: ``sluice <command> [options]``.

Each command lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``handler`` to a function taking the parsed arguments and returning the
exit status.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence

from cli import canaries, control, dashboard, events, standalone, validate, watching

EXIT_OK = 0
EXIT_USAGE = 2


def version() -> str:
    """The installed package version of Sluice."""
    try:
        return importlib.metadata.version("sluice")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _run_version(_: argparse.Namespace) -> int:
    print(f"sluice {version()}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv else ""
    parser = argparse.ArgumentParser(
        prog="kubectl sluice" if invoked.startswith("kubectl-") else "sluice",
        description="Progressive delivery for Apache APISIX (Flagger-compatible).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    validate.register(subparsers)
    canaries.register(subparsers)
    control.register(subparsers)
    dashboard.register(subparsers)
    watching.register(subparsers)
    events.register(subparsers)
    standalone.register(subparsers)
    version_parser = subparsers.add_parser("version", help="print the Sluice version")
    version_parser.set_defaults(handler=_run_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sluice`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    status: int = handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())

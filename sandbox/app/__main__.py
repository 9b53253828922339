"""``python -m sandbox.app --port N [--host H] [--version V] [--env KEY=VALUE]... [--name NAME]``

Runs one podinfo-like app (``sandbox.app.server.PodApp``) as a plain process, for APISIX
standalone setups that need a stable and a canary without Kubernetes. The app behaves as if its
container were ``ghcr.io/stefanprodan/podinfo:<version>`` with that environment:
``SANDBOX_ERROR_RATE``, ``SANDBOX_LATENCY_MS``, ``SANDBOX_NEVER_READY`` and podinfo's
``PODINFO_*`` variables (``sandbox.app.config``). Once listening it prints ``APP_URL=...``
(flushed), then serves until SIGTERM or SIGINT and exits 0; 2 for bad arguments or a port in use.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from sandbox.app import server

IMAGE = "ghcr.io/stefanprodan/podinfo"
DEFAULT_VERSION = "6.0.0"


def _env_item(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--env: expected KEY=VALUE, got {text!r}")
    return name, value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.app", description=(__doc__ or "").split("\n\n")[1]
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--version", default=DEFAULT_VERSION, help="the version it reports (default %(default)s)"
    )
    parser.add_argument(
        "--env",
        type=_env_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the simulated container (repeatable)",
    )
    parser.add_argument("--name", default="podinfo", help="the hostname it reports")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port: expected 1..65535, got {args.port}")
    if not args.version or any(c in args.version for c in "/: "):
        parser.error(f"--version: expected an image tag such as 6.0.1, got {args.version!r}")
    return args


def container(version: str, env: list[tuple[str, str]]) -> dict[str, object]:
    """The container spec the app reads its behaviour from."""
    return {
        "name": "podinfo",
        "image": f"{IMAGE}:{version}",
        "env": [{"name": name, "value": value} for name, value in env],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = server.PodApp(container(args.version, args.env), hostname=args.name)
    for problem in app.config.problems:
        logging.getLogger("sandbox.app").warning("%s", problem)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await app.start(args.host, args.port)
        try:
            print(f"APP_URL=http://{args.host}:{args.port}", flush=True)
            await stop.wait()
        finally:
            await app.stop()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve())
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

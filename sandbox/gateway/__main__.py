"""``python -m sandbox.gateway --kubeconfig PATH [--port N] [--metrics-port M]``

Runs the gateway in the foreground; once both listeners are up it prints
``GATEWAY_URL=...`` and ``GATEWAY_METRICS_URL=...`` (one per line, flushed), then serves until
SIGTERM or SIGINT and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from sandbox import kubewatch
from sandbox.gateway import app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--kubeconfig", required=True, help="kubeconfig whose current context names the API server"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address both listeners bind (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=0, help="data plane port (default: a free one)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="metrics/debug port (default: a free one)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    kube_url = kubewatch.server_from_kubeconfig(args.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with app.Gateway(
        kube_url, host=args.host, port=args.port, metrics_port=args.metrics_port
    ) as gw:
        print(f"GATEWAY_URL={gw.url}", flush=True)
        print(f"GATEWAY_METRICS_URL={gw.metrics_endpoint}", flush=True)
        print(f"GATEWAY_ROUTES_URL={gw.metrics_url}{app.ROUTES_PATH}", flush=True)
        await stop.wait()
        logging.getLogger("sandbox.gateway").info("stopping")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args))
    except kubewatch.KubeconfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m sandbox.proxy --kubeconfig PATH [--port N]``

Runs the name proxy in the foreground; once listening it prints ``NAME_PROXY_URL=...``
(flushed) — use it as ``HTTP_PROXY`` — and serves until SIGTERM or SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from sandbox import kubewatch
from sandbox.proxy import app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.proxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--kubeconfig", required=True, help="kubeconfig whose current context names the API server"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    kube_url = kubewatch.server_from_kubeconfig(args.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with app.NameProxy(kube_url, host=args.host, port=args.port) as proxy:
        print(f"NAME_PROXY_URL={proxy.url}", flush=True)
        await stop.wait()
        logging.getLogger("sandbox.proxy").info("stopping")


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

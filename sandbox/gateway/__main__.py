"""``python -m sandbox.gateway [--kubeconfig PATH] [--admin-key-file PATH] [--port N]
[--metrics-port M] [--admin-port A]``

Runs the gateway in the foreground; once its listeners are up it prints ``GATEWAY_URL=...``,
``GATEWAY_METRICS_URL=...``, ``GATEWAY_ROUTES_URL=...`` and, with ``--admin-key-file``,
``GATEWAY_ADMIN_URL=...`` (one per line, flushed), then serves until SIGTERM or SIGINT and
exits 0. ``--kubeconfig`` syncs ApisixRoutes from that cluster; ``--admin-key-file`` (a file
holding the admin key) serves APISIX's Admin API. At least one of the two is needed; exit 2 for
an unusable kubeconfig or key file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import signal
import sys

import uvloop

from sandbox import kubewatch
from sandbox.gateway import app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.gateway", description=(__doc__ or "").split("\n\n")[1]
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig whose current context names the API server"
    )
    parser.add_argument(
        "--admin-key-file", type=pathlib.Path, help="file holding the Admin API key"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the listeners bind (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=0, help="data plane port (default: a free one)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="metrics/debug port (default: a free one)"
    )
    parser.add_argument(
        "--admin-port", type=int, default=0, help="Admin API port (default: a free one)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _announce(gw: app.Gateway) -> list[str]:
    lines = [
        f"GATEWAY_URL={gw.url}",
        f"GATEWAY_METRICS_URL={gw.metrics_endpoint}",
        f"GATEWAY_ROUTES_URL={gw.metrics_url}{app.ROUTES_PATH}",
    ]
    if gw.admin_url:
        lines.append(f"GATEWAY_ADMIN_URL={gw.admin_url}")
    return lines


def read_admin_key(path: pathlib.Path) -> str:
    """The key in ``path`` (surrounding whitespace stripped); ``ValueError`` names the file."""
    try:
        key = path.read_text().strip()
    except OSError as e:
        raise ValueError(f"--admin-key-file: cannot read {path}: {e.strerror}") from e
    if not key:
        raise ValueError(f"--admin-key-file: expected a key in {path}, the file is empty")
    return key


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.kubeconfig is None and args.admin_key_file is None:
        print("error: expected --kubeconfig, --admin-key-file or both", file=sys.stderr)
        return 2
    try:
        admin_key = read_admin_key(args.admin_key_file) if args.admin_key_file else None
        kube_url = kubewatch.server_from_kubeconfig(args.kubeconfig) if args.kubeconfig else None
    except (ValueError, kubewatch.KubeconfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        gateway = app.Gateway(
            kube_url,
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            admin_key=admin_key,
            admin_port=args.admin_port,
        )
        async with gateway as gw:
            for line in _announce(gw):
                print(line, flush=True)
            await stop.wait()
            logging.getLogger("sandbox.gateway").info("stopping")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())

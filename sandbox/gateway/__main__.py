"""``python -m sandbox.gateway --kubeconfig PATH [--port N] [--metrics-port M]``

Runs the gateway in the foreground; once both listeners are up it prints
``GATEWAY_URL=...`` and ``GATEWAY_METRICS_URL=...`` (one per line, flushed), then serves until
SIGTERM or SIGINT and exits 0.
"""

from __future__ import annotations

import argparse
import sys

from sandbox import serving
from sandbox.gateway import app


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address both listeners bind (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=0, help="data plane port (default: a free one)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="metrics/debug port (default: a free one)"
    )


def _open(args: argparse.Namespace, kube_url: str) -> app.Gateway:
    return app.Gateway(kube_url, host=args.host, port=args.port, metrics_port=args.metrics_port)


def _announce(gw: app.Gateway) -> list[str]:
    return [
        f"GATEWAY_URL={gw.url}",
        f"GATEWAY_METRICS_URL={gw.metrics_endpoint}",
        f"GATEWAY_ROUTES_URL={gw.metrics_url}{app.ROUTES_PATH}",
    ]


def main(argv: list[str] | None = None) -> int:
    return serving.run_foreground(
        "sandbox.gateway", __doc__ or "", argv, _arguments, _open, _announce
    )


if __name__ == "__main__":
    sys.exit(main())

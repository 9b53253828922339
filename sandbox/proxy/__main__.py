"""``python -m sandbox.proxy --kubeconfig PATH [--port N]``

Runs the name proxy in the foreground; once listening it prints ``NAME_PROXY_URL=...``
(flushed) — use it as ``HTTP_PROXY`` — and serves until SIGTERM or SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import sys

from sandbox import serving
from sandbox.proxy import app


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")


def _open(args: argparse.Namespace, kube_url: str) -> app.NameProxy:
    return app.NameProxy(kube_url, host=args.host, port=args.port)


def main(argv: list[str] | None = None) -> int:
    return serving.run_foreground(
        "sandbox.proxy",
        __doc__ or "",
        argv,
        _arguments,
        _open,
        lambda proxy: [f"NAME_PROXY_URL={proxy.url}"],
    )


if __name__ == "__main__":
    sys.exit(main())

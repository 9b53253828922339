"""What the sandbox's servers share: listeners, their lifecycle, and running in the foreground.

* ``listen`` / ``url_of``: a listening socket (port 0 picks a free one) and its base URL;
* ``Sites``: the aiohttp runners of one component, started in order, cleaned up in reverse;
* ``Component``: ``async with`` for anything with ``start()`` / ``stop()``;
* ``run_foreground``: the ``python -m sandbox.<x> --kubeconfig PATH`` entry points: parse the
  arguments, run the component on uvloop, print its ``NAME=url`` lines (flushed), serve until
  SIGTERM or SIGINT, exit 0 (2 for an unusable kubeconfig).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import uvloop
from aiohttp import web

from sandbox import kubewatch


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it back from ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Sites:
    """The listeners of one component."""

    def __init__(self) -> None:
        self._runners: list[web.BaseRunner] = []

    async def add(self, runner: web.BaseRunner, host: str, port: int) -> str:
        """Serve ``runner`` on ``host:port`` (0: a free port); returns its base URL."""
        sock = listen(host, port)
        self._runners.append(runner)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return url_of(sock)

    async def close(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


class Component:
    """``async with component:`` starts it and always stops it."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def run_foreground(
    prog: str,
    doc: str,
    argv: list[str] | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    open_component: Callable[[argparse.Namespace, str], AbstractAsyncContextManager[Any]],
    announce: Callable[[Any], list[str]],
) -> int:
    """The body of a ``__main__``: ``open_component(args, kube_url)`` until a signal."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.split("\n")[0])
    parser.add_argument(
        "--kubeconfig", required=True, help="kubeconfig whose current context names the API server"
    )
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def serve() -> None:
        kube_url = kubewatch.server_from_kubeconfig(args.kubeconfig)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_component(args, kube_url) as component:
            for line in announce(component):
                print(line, flush=True)
            await stop.wait()
            logging.getLogger(prog).info("stopping")

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve())
    except kubewatch.KubeconfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

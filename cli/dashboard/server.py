"""The dashboard's web server: one static page, a JSON snapshot, a server-sent event stream and,
with ``--allow-actions``, control requests.

What the pages see of the bus comes from ``feed.Feed``.

Routes:

* ``GET /`` — the page (``static/index.html``, ``app.js``, ``style.css``; no build step)
* ``GET /api/config`` — ``{"allow_actions": bool, "user": "...", "nats_url": "..."}``
* ``GET /api/canaries`` — ``{"canaries": [CanaryView...], "status": {...}}``
* ``GET /api/stream`` — ``text/event-stream``: ``snapshot`` at connect, then ``canary``,
  ``removed``, ``event`` and ``status`` messages; a comment line as keep-alive
* ``POST /api/canaries/{namespace}/{name}/{action}`` — a ``ControlRequest`` to the analyzer
  (JSON body, optional ``{"gate": "...", "reason": "..."}``); the ``ControlAnswer`` as JSON, or
  ``{"error": ...}`` with 403 (actions not allowed), 400, 503 (no analyzer answered), 504, 502
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import pathlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from nats.aio.client import Client

from cli import connecting
from cli.dashboard.feed import Feed
from libs import messages

log = logging.getLogger("sluice.dashboard")

STATIC = pathlib.Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 15.0

FEED: web.AppKey[Feed] = web.AppKey("feed")
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    allow_actions: bool = False
    user: str = ""
    nats_url: str = ""
    keepalive_s: float = KEEPALIVE_S
    loopback_only: bool = True  # answer only requests addressed to a loopback host name


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=messages.ENCODER.encode(body), status=status, content_type="application/json"
    )


def _host_name(host: str) -> str:
    """``localhost:8080`` -> ``localhost``; ``[::1]:8080`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Headers for every answer; on loopback, only loopback host names (DNS rebinding); state
    changes only from this page's origin."""
    settings = request.app[SETTINGS]
    if settings.loopback_only and request.host and not is_loopback(_host_name(request.host)):
        return _json({"error": f"unexpected Host {request.host!r}"}, 421)
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if origin and origin.split("://", 1)[-1] != request.host:
            return _json({"error": f"cross-origin request from {origin} refused"}, 403)
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
    )
    return response


async def _index(_: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _config(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return _json(
        {
            "allow_actions": settings.allow_actions,
            "user": settings.user,
            "nats_url": settings.nats_url,
            "actions": list(messages.CONTROL_ACTIONS),
        }
    )


async def _canaries(request: web.Request) -> web.Response:
    return _json(request.app[FEED].snapshot())


async def _stream(request: web.Request) -> web.StreamResponse:
    feed, settings = request.app[FEED], request.app[SETTINGS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = feed.attach()
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), settings.keepalive_s)
            except TimeoutError:
                chunk = b": keep-alive\n\n"
            if chunk is None:  # shutting down, or the page fell behind
                break
            await response.write(chunk)
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    finally:
        feed.detach(queue)
    return response


async def _act(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    action = request.match_info["action"]
    if not settings.allow_actions:
        return _json(
            {
                "error": "actions are disabled: this dashboard is read-only; "
                "start it with `sluice dashboard --allow-actions` to promote, abort, approve ..."
            },
            403,
        )
    if request.content_type != "application/json":
        return _json({"error": "expected a JSON body (Content-Type: application/json)"}, 415)
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        return _json({"error": "the body is not JSON"}, 400)
    if not isinstance(body, dict):
        body = {}
    gate, reason = str(body.get("gate") or ""), str(body.get("reason") or "")
    status, answer = await request.app[FEED].control(namespace, name, action, gate, reason)
    return _json(answer, status)


def make_app(feed: Feed, settings: Settings) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[FEED] = feed
    app[SETTINGS] = settings
    app.router.add_get("/", _index)
    app.router.add_get("/api/config", _config)
    app.router.add_get("/api/canaries", _canaries)
    app.router.add_get("/api/stream", _stream)
    app.router.add_post("/api/canaries/{namespace}/{name}/{action}", _act)
    app.router.add_static("/static/", STATIC)

    async def on_shutdown(_: web.Application) -> None:
        feed.close_pages()

    app.on_shutdown.append(on_shutdown)
    return app


# ----------------------------------------------------------------------------- the command


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``:port`` or ``port`` (host defaults to 127.0.0.1)."""
    host, port = "127.0.0.1", text
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        host, port = inside, rest.lstrip(":")
    elif ":" in text:
        host, _, port = text.rpartition(":")
        host = host or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise connecting.CliError(
            f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080"
        ) from None
    if not 0 <= number <= 65535:
        raise connecting.CliError(f"--listen {text!r}: the port must be 0..65535")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(args: Any, stop: asyncio.Event | None = None) -> int:
    """Run the dashboard until SIGINT / SIGTERM (or ``stop``); 0 when stopped that way."""
    host, port = parse_listen(args.listen)
    url, _ = connecting.nats_url(args)
    user = connecting.identity(args)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _serve(args, host, port, url, user, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(args: Any, host: str, port: int, url: str, user: str, stop: asyncio.Event) -> int:
    nc: Client | None = await connecting.connect(args)
    feed = Feed(lambda: connecting.connect(args), user)
    settings = Settings(
        allow_actions=bool(args.allow_actions),
        user=user,
        nats_url=url,
        loopback_only=is_loopback(host),
    )
    runner = web.AppRunner(make_app(feed, settings), access_log=None, shutdown_timeout=2.0)
    following: asyncio.Task[None] | None = None
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise connecting.CliError(
                    f"cannot listen on {host}:{port}: the address is already in use; choose "
                    "another with --listen HOST:PORT (port 0: any free port)"
                ) from None
            raise connecting.CliError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        following = asyncio.create_task(feed.run(nc), name="dashboard-feed")
        nc = None  # the feed owns it now
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        mode = "actions allowed" if settings.allow_actions else "read-only"
        print(
            f"sluice dashboard: http://{shown}:{bound[1]}/ ({mode}, as {user}; NATS {url}); "
            "Ctrl-C stops it",
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()
        if following is not None:
            await cancel(following)
        if nc is not None:
            await nc.close()
    return 0


async def cancel(task: asyncio.Task[Any], timeout_s: float = 5.0) -> None:
    """Cancel ``task`` and wait for it, cancelling again while it runs: on Python 3.11 a
    cancellation that meets a reply in ``asyncio.wait_for`` (nats-py's requests) can be lost."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done() and loop.time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)
    if task.done() and not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


def run(args: Any) -> int:
    """The ``sluice dashboard`` handler."""
    logging.basicConfig(level=logging.WARNING, format="sluice dashboard: %(message)s")
    try:
        return asyncio.run(serve(args))
    except connecting.CliError as exc:
        print(f"sluice dashboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0

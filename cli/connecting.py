"""How CLI commands reach the bus: the NATS address, the connection, and who is asking.

The address comes from ``--nats-url``, else ``NATS_URL``, else ``SLUICE_NATS_URL`` (what the
services read), else ``nats://127.0.0.1:4222``. A connection that cannot be made is a
``CliError`` naming the address, the cause and where the address came from, so the user knows
what to fix ("cannot reach NATS at nats://127.0.0.1:4222 (the default): connection refused; is
the stack up? try make sandbox-up, or set NATS_URL").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import socket
import weakref
from collections.abc import Mapping

import nats
from nats.aio.client import Client

from libs import logs

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# what the server told each connection asynchronously (e.g. a permissions violation)
_ERRORS: weakref.WeakKeyDictionary[Client, list[str]] = weakref.WeakKeyDictionary()
_COMPLAINED: weakref.WeakKeyDictionary[Client, asyncio.Event] = weakref.WeakKeyDictionary()
CONNECT_TIMEOUT_S = 5.0


class CliError(Exception):
    """A failure the CLI reports in one line on stderr (exit status 1)."""


def add_nats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-url",
        help=f"the NATS server (default: $NATS_URL, else $SLUICE_NATS_URL, else {DEFAULT_NATS_URL})",
    )


def nats_url(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The NATS address and where it came from (for error messages)."""
    env = os.environ if environ is None else environ
    given = getattr(args, "nats_url", None)
    if given:
        return given, "--nats-url"
    for name in ("NATS_URL", "SLUICE_NATS_URL"):
        if env.get(name):
            return env[name], f"${name}"
    return DEFAULT_NATS_URL, "the default"


def identity(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    """Who asks, as recorded with a control request: ``--as``, else ``$SLUICE_USER``, else
    ``<login>@<host>``."""
    env = os.environ if environ is None else environ
    given = getattr(args, "as_user", None)
    if given:
        return str(given)
    if env.get("SLUICE_USER"):
        return env["SLUICE_USER"]
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return f"{login}@{socket.gethostname()}"


async def connect(args: argparse.Namespace, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """A connection to the bus, or a ``CliError`` that says what to fix."""
    url, source = nats_url(args)
    failed = asyncio.Event()
    causes: list[str] = []

    async def on_error(exc: Exception) -> None:
        # nats.py keeps trying the first connection; the first failure is the answer here
        causes.append(str(exc) or type(exc).__name__)
        failed.set()

    attempt = asyncio.ensure_future(
        nats.connect(
            url,
            name="sluice-cli",
            connect_timeout=timeout_s,
            allow_reconnect=False,
            error_cb=on_error,
        )
    )
    gave_up = asyncio.ensure_future(failed.wait())
    try:
        await asyncio.wait(
            {attempt, gave_up}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gave_up.cancel()
    if attempt.done() and attempt.exception() is None:
        nc = attempt.result()
        _ERRORS[nc] = causes  # from now on the callback collects the server's complaints
        causes.clear()
        failed.clear()  # ... and this says a new one came
        _COMPLAINED[nc] = failed
        return nc
    cause = causes[0] if causes else "no answer (timed out)"
    if attempt.done():
        cause = causes[0] if causes else str(attempt.exception()) or "no connection"
    else:
        attempt.cancel()
        with contextlib.suppress(BaseException):
            await attempt
    shown = logs.redact_url(url) if "@" in url else url  # never a password on stderr
    raise CliError(
        f"cannot reach NATS at {shown} ({source}): {_plain(cause)}; is the stack up? "
        "try make sandbox-up, or set NATS_URL / --nats-url"
    )


def server_errors(nc: Client) -> list[str]:
    """What the server reported on this connection since it was made (newest last)."""
    return list(_ERRORS.get(nc, ()))


async def complaint(nc: Client, seen: int) -> list[str]:
    """Wait until the server has reported more than ``seen`` errors on this connection; all of
    them (forever for a connection not made by ``connect``)."""
    event = _COMPLAINED.get(nc)
    while event is not None and len(server_errors(nc)) <= seen:
        event.clear()
        await event.wait()
    if event is None:
        await asyncio.Event().wait()
    return server_errors(nc)


def _plain(cause: str) -> str:
    text = cause.strip().rstrip(".")
    lowered = text.lower()
    if "connect call failed" in lowered or "connection refused" in lowered:
        return "connection refused"
    if "timeout" in lowered or "timed out" in lowered:
        return "no answer (timed out)"
    return text or "no connection"

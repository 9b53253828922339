"""How CLI commands reach the bus: the NATS address, the connection, and who is asking.

The address comes from ``--nats-url``, else ``NATS_URL``, else ``SLUICE_NATS_URL`` (what the
services read), else ``nats://127.0.0.1:4222``. A connection that cannot be made is a
``CliError`` naming the address, the cause and where the address came from, so the user knows
what to fix ("cannot reach NATS at nats://127.0.0.1:4222 (the default): connection refused; is
the stack up? try make sandbox-up, or set NATS_URL").

Credentials and TLS come from flags, else the variables the ``nats`` CLI reads: ``--creds`` /
``NATS_CREDS`` (a JWT + nkey seed file), ``--nkey`` / ``NATS_NKEY`` (a seed file), ``--user`` /
``NATS_USER`` with ``--password`` / ``NATS_PASSWORD`` (a user alone is a token, as for ``nats``),
``--tlsca`` / ``NATS_CA``, ``--tlscert`` / ``NATS_CERT`` and ``--tlskey`` / ``NATS_KEY``
(docs/security.md). No password or token is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import socket
import weakref
from collections.abc import Mapping

import nats
from nats.aio.client import Client

from libs import bus, errors, logs

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# what the server told each connection asynchronously (e.g. a permissions violation)
_ERRORS: weakref.WeakKeyDictionary[Client, list[str]] = weakref.WeakKeyDictionary()
_COMPLAINED: weakref.WeakKeyDictionary[Client, asyncio.Event] = weakref.WeakKeyDictionary()
CONNECT_TIMEOUT_S = 5.0
# (argument, flag, environment variable) of each credential and TLS option, as the nats CLI
SECURITY_OPTIONS = (
    ("creds", "--creds", "NATS_CREDS"),
    ("nkey", "--nkey", "NATS_NKEY"),
    ("user", "--user", "NATS_USER"),
    ("password", "--password", "NATS_PASSWORD"),
    ("tlsca", "--tlsca", "NATS_CA"),
    ("tlscert", "--tlscert", "NATS_CERT"),
    ("tlskey", "--tlskey", "NATS_KEY"),
)
_HELP = {
    "creds": "a NATS credentials file (user JWT + nkey seed)",
    "nkey": "a file holding a NATS user nkey seed",
    "user": "the NATS user (alone, without a password: a token)",
    "password": "the NATS user's password (prefer the variable to the flag)",
    "tlsca": "the CA bundle that signed the NATS server's certificate",
    "tlscert": "a client certificate, for servers that verify clients (mutual TLS)",
    "tlskey": "the client certificate's private key",
}


class CliError(Exception):
    """A failure the CLI reports in one line on stderr (exit status 1)."""


def add_nats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-url",
        help=f"the NATS server (default: $NATS_URL, else $SLUICE_NATS_URL, else {DEFAULT_NATS_URL})",
    )
    for dest, flag, variable in SECURITY_OPTIONS:
        metavar = dest.upper() if dest in ("user", "password") else "FILE"
        parser.add_argument(
            flag, dest=f"nats_{dest}", metavar=metavar, help=f"{_HELP[dest]} (default: ${variable})"
        )


def security_options(
    args: argparse.Namespace, url: str, environ: Mapping[str, str] | None = None
) -> dict[str, object]:
    """nats-py ``connect`` arguments for the credentials and TLS given by flags or variables; a
    file that cannot be read is a ``CliError`` naming the flag, the variable and the path."""
    env = os.environ if environ is None else environ
    given: dict[str, str] = {}
    names: dict[str, str] = {}
    for dest, flag, variable in SECURITY_OPTIONS:
        value = getattr(args, f"nats_{dest}", None)
        if value:
            given[dest], names[dest] = value, flag
        elif env.get(variable):
            given[dest], names[dest] = env[variable], f"${variable}"
    ways = [dest for dest in ("creds", "nkey", "user") if dest in given]
    if len(ways) > 1:
        raise CliError(
            f"{names[ways[0]]} and {names[ways[1]]}: expected one way to authenticate to NATS"
        )
    if "password" in given and "user" not in given:
        raise CliError(f"{names['password']}: expected a user with it (--user or $NATS_USER)")
    if ("tlscert" in given) != ("tlskey" in given):
        has, lacks = ("tlscert", "--tlskey") if "tlscert" in given else ("tlskey", "--tlscert")
        raise CliError(f"{names[has]}: expected {lacks} with it (mutual TLS)")
    options: dict[str, object] = {}
    try:
        if "creds" in given:
            bus.read_secret(given["creds"], names["creds"])
            options["user_credentials"] = given["creds"]
        if "nkey" in given:
            options["nkeys_seed_str"] = bus.read_secret(given["nkey"], names["nkey"])
        if "user" in given and "password" in given:
            options["user"], options["password"] = given["user"], given["password"]
        elif "user" in given:
            options["token"] = given["user"]
        for dest in ("tlsca", "tlscert", "tlskey"):
            if dest in given:
                bus.read_secret(given[dest], names[dest])
        if bus.wants_tls(url, given.get("tlsca", ""), given.get("tlscert", "")):
            options["tls"] = bus.tls_context(
                given.get("tlsca", ""),
                given.get("tlscert", ""),
                given.get("tlskey", ""),
                names=(
                    names.get("tlsca", "--tlsca"),
                    names.get("tlscert", "--tlscert"),
                    names.get("tlskey", "--tlskey"),
                ),
            )
    except errors.InvalidInput as exc:
        raise CliError(str(exc)) from None
    return options


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
    options = security_options(args, url)
    if "tls" in options and _not_ssl_eof_noise not in logging.getLogger("asyncio").filters:
        logging.getLogger("asyncio").addFilter(_not_ssl_eof_noise)
    failed = asyncio.Event()
    causes: list[str] = []
    connected = False

    async def on_error(exc: Exception) -> None:
        # nats.py keeps trying the first connection; the first failure is the answer here
        causes.append(str(exc) or type(exc).__name__ if connected else bus.connect_failure(exc))
        failed.set()

    attempt = asyncio.ensure_future(
        nats.connect(
            url,
            name="sluice-cli",
            connect_timeout=timeout_s,
            allow_reconnect=False,
            error_cb=on_error,
            **options,
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
        connected = True
        _ERRORS[nc] = causes  # from now on the callback collects the server's complaints
        causes.clear()
        failed.clear()  # ... and this says a new one came
        _COMPLAINED[nc] = failed
        return nc
    cause = causes[0] if causes else "no answer (timed out)"
    if attempt.done():
        exc = attempt.exception()
        cause = causes[0] if causes else (bus.connect_failure(exc) if exc else "no connection")
    else:
        attempt.cancel()
        with contextlib.suppress(BaseException):
            await attempt
    shown = logs.redact_url(url) if "@" in url else url  # never a password on stderr
    plain = _plain(cause)
    hint = (
        "check the credentials and TLS options (docs/security.md)"
        if plain.startswith(("the server refused the credentials", "TLS "))
        else "is the stack up? try make sandbox-up, or set NATS_URL / --nats-url"
    )
    raise CliError(f"cannot reach NATS at {shown} ({source}): {plain}; {hint}")


def _not_ssl_eof_noise(record: logging.LogRecord) -> bool:
    """asyncio warns "returning true from eof_received() has no effect when using ssl" when a TLS
    connection of nats-py's ends; it says nothing to a user of the CLI."""
    return "eof_received()" not in record.getMessage()


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

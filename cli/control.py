"""``sluice promote|abort|pause|resume|retry|approve|reject NAME``: act on a canary now.

Each sends a ``ControlRequest`` to ``sluice.control.<ns>.<name>.<action>``; one analyzer
replica answers "accepted" (what will happen) or why not ("podinfo.test is Succeeded; nothing
to abort"). Pause and resume take effect at once; the others are carried out by the canary's
next step, and the command waits for that (``--no-wait`` returns once accepted), printing
what came of it.

Who asks is ``--as``, else ``$SLUICE_USER``, else ``<login>@<host>``; it is recorded in the
Canary's status and Events. What a NATS user may send is up to the server's subject
permissions (docs/security.md).

Exit status: 0 accepted (and carried out); 1 refused, dropped, or the bus cannot be reached
(the reason on stderr); 2 usage errors or still not carried out after ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client

from cli import canaries, connecting
from libs import errors, messages
from libs.model import durations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
REQUEST_TIMEOUT_S = 15.0

HELP = {
    "promote": "skip the rest of the analysis and promote now",
    "abort": "roll back now",
    "pause": "take no step until resumed (Flagger's suspend, without editing the spec)",
    "resume": "go on after a pause",
    "retry": "analyse a Failed revision again",
    "approve": "open the gate the canary waits at, once",
    "reject": "refuse the gate the canary waits at: roll back",
}
AT_ONCE = ("pause", "resume")


def register(subparsers: Any) -> None:
    for action, text in HELP.items():
        parser = subparsers.add_parser(action, help=text, description=f"{text.capitalize()}.")
        parser.add_argument("name", help="the Canary's name")
        if action in ("approve", "reject"):
            parser.add_argument(
                "gate",
                nargs="?",
                default="",
                help="confirm-rollout, confirm-traffic-increase, confirm-promotion or the gate "
                "webhook's name (default: the gate it waits at)",
            )
        parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
        parser.add_argument(
            "--kubeconfig",
            default=canaries.default_kubeconfig(),
            help="kubeconfig whose current namespace is the default (nothing else is read)",
        )
        parser.add_argument("--reason", default="", help="why, recorded with the request")
        parser.add_argument(
            "--as", dest="as_user", help="who asks (default: $SLUICE_USER, else login@host)"
        )
        connecting.add_nats_arguments(parser)
        if action not in AT_ONCE:
            parser.add_argument(
                "--no-wait",
                action="store_true",
                help="return once accepted; do not wait for the step",
            )
            parser.add_argument(
                "--timeout",
                default="2m",
                help="how long to wait for the step that carries it out (default 2m)",
            )
        parser.set_defaults(handler=_run, action=action)


def _run(args: argparse.Namespace) -> int:
    namespace = canaries.default_namespace(args)
    wait_s = 0.0
    if args.action not in AT_ONCE and not args.no_wait:
        try:
            wait_s = durations.parse_duration(args.timeout)
        except (ValueError, errors.InvalidInput) as exc:
            print(
                f"sluice: --timeout: expected a duration like 90s or 2m, got {args.timeout!r} ({exc})",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
    request = messages.ControlRequest(
        canary=messages.CanaryRef(namespace=namespace, name=args.name),
        action=args.action,
        gate=getattr(args, "gate", "") or "",
        by=connecting.identity(args),
        reason=args.reason,
        timeout_s=REQUEST_TIMEOUT_S,
    )
    try:
        return asyncio.run(_control(args, request, wait_s))
    except (connecting.CliError, errors.SluiceError) as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return EXIT_FAILED


async def send(
    nc: Client, request: messages.ControlRequest, timeout_s: float = REQUEST_TIMEOUT_S
) -> messages.ControlAnswer:
    """Send one control request; the analyzer's answer, or a ``CliError`` saying why none came."""
    ref = request.canary
    try:
        subject = messages.control_subject(ref.namespace, ref.name, request.action)
    except errors.InvalidInput as exc:
        raise connecting.CliError(str(exc)) from exc
    seen = len(connecting.server_errors(nc))
    asking = asyncio.ensure_future(
        nc.request(subject, messages.ENCODER.encode(request), timeout=timeout_s)
    )
    # a publish the server refuses gets no answer, only an error on the connection: say it
    # as soon as it comes instead of waiting out the timeout
    refusal = asyncio.ensure_future(connecting.complaint(nc, seen))
    try:
        await asyncio.wait({asking, refusal}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        refusal.cancel()
    if not asking.done():
        refused = [e for e in connecting.server_errors(nc)[seen:] if "permission" in e.lower()]
        if refused:
            asking.cancel()
            with contextlib.suppress(BaseException):
                await asking
            raise connecting.CliError(
                f"the NATS server refused the request: {refused[-1].strip()}; your NATS user "
                f"may not send {request.action} requests for {ref.namespace} (see docs/security.md)"
            )
    try:
        msg = await asking
    except nats.errors.NoRespondersError as exc:
        raise connecting.CliError(
            f"no analyzer answers on {subject}; is the analyzer running (with Kubernetes access)?"
        ) from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        refused = [e for e in connecting.server_errors(nc) if "permission" in e.lower()]
        if refused:
            raise connecting.CliError(
                f"the NATS server refused the request: {refused[-1].strip()}; your NATS user "
                f"may not send {request.action} requests for {ref.namespace} (see docs/security.md)"
            ) from exc
        raise connecting.CliError(f"no answer on {subject} within {timeout_s:g}s") from exc
    try:
        reply = messages.REPLY_DECODER.decode(msg.data)
    except msgspec.DecodeError as exc:
        raise connecting.CliError(f"an answer that does not decode on {subject}: {exc}") from exc
    if isinstance(reply, messages.CommandFailed):
        raise connecting.CliError(f"the analyzer could not decide: {reply.error}")
    if not isinstance(reply, messages.ControlAnswer):
        raise connecting.CliError(f"an unexpected answer on {subject}: {type(reply).__name__}")
    return reply


async def _control(
    args: argparse.Namespace, request: messages.ControlRequest, wait_s: float
) -> int:
    nc = await connecting.connect(args)
    try:
        ref = request.canary
        applied: asyncio.Queue[messages.ControlApplied] = asyncio.Queue()

        async def on_event(msg: Any) -> None:
            with contextlib.suppress(msgspec.DecodeError):
                event = messages.EVENT_DECODER.decode(msg.data)
                if isinstance(event, messages.ControlApplied) and event.action == request.action:
                    applied.put_nowait(event)

        if wait_s > 0:  # listening before asking: the step may be quicker than the answer
            subject = messages.event_subject(ref.namespace, ref.name, "control_applied")
            await nc.subscribe(subject, cb=on_event)
        answer = await send(nc, request)
        if not answer.accepted:
            print(f"sluice: {answer.message}", file=sys.stderr)
            return EXIT_FAILED
        print(answer.message)
        if wait_s <= 0:
            return EXIT_OK
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    event = await applied.get()
                    if event.by == request.by:
                        break
        except TimeoutError:
            print(
                f"sluice: accepted, but not carried out within {args.timeout}; "
                f"see sluice describe canary {ref.name} -n {ref.namespace}",
                file=sys.stderr,
            )
            return EXIT_TIMEOUT
        if event.outcome.startswith("dropped"):
            print(f"sluice: {event.message or event.outcome}", file=sys.stderr)
            return EXIT_FAILED
        print(event.message or f"{ref.name}.{ref.namespace}: {event.outcome}")
        return EXIT_OK
    finally:
        with contextlib.suppress(Exception):
            await nc.close()

"""Standalone mode from the command line (APISIX without Kubernetes; docs/standalone.md).

``sluice apply -f FILE...``
    Validate every document (as ``sluice validate``), then store each ``ApisixCanary`` and
    ``MetricTemplate`` in the bus's KV buckets, where the services read them. One problem in
    any document and nothing is applied. Prints ``podinfo (ApisixCanary, default) created``.
``sluice rollout start NAME --revision V``
    Say that revision ``V`` now runs behind the canary's canary upstream: the analysis starts.
``sluice delete canary NAME``
    Delete a standalone canary: its route is given back as it was before, then it is gone.

Namespaces group standalone canaries (default ``default``). Exit status: 0 done; 1 refused,
invalid, not found or the bus cannot be reached (the reason on stderr); 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
from typing import Any

import msgspec
import nats.errors

from cli import connecting
from libs import errors, messages, streams
from libs.model import documents, standalone
from libs.standalone import applying
from libs.standalone import store as canary_store

EXIT_OK = 0
EXIT_FAILED = 1
REQUEST_TIMEOUT_S = 15.0
KV_TIMEOUT_S = 5.0


def register(subparsers: Any) -> None:
    apply = subparsers.add_parser(
        "apply",
        help="store standalone canaries and metric templates (standalone mode)",
        description="Validate, then store ApisixCanary and MetricTemplate documents on the bus.",
    )
    apply.add_argument(
        "-f", "--filename", action="append", required=True, help="a YAML file ('-': stdin)"
    )
    connecting.add_nats_arguments(apply)
    apply.set_defaults(handler=_run_apply)

    rollout = subparsers.add_parser(
        "rollout", help="start analysing a new revision (standalone mode)"
    )
    verbs = rollout.add_subparsers(dest="verb", metavar="start", required=True)
    start = verbs.add_parser(
        "start",
        help="a new revision runs behind the canary upstream",
        description="Say that a new revision runs behind the canary's canary upstream.",
    )
    start.add_argument("name", help="the canary's name")
    start.add_argument("--revision", required=True, help="the new revision (a version, a tag)")
    start.add_argument("-n", "--namespace", default=standalone.DEFAULT_NAMESPACE)
    start.add_argument("--as", dest="as_user", help="who deployed it (default: $SLUICE_USER)")
    connecting.add_nats_arguments(start)
    start.set_defaults(handler=_run_rollout)

    delete = subparsers.add_parser("delete", help="delete a standalone canary")
    kinds = delete.add_subparsers(dest="kind", metavar="canary", required=True)
    one = kinds.add_parser("canary", aliases=["canaries"], help="a standalone canary by name")
    one.add_argument("name", help="the canary's name")
    one.add_argument("-n", "--namespace", default=standalone.DEFAULT_NAMESPACE)
    connecting.add_nats_arguments(one)
    one.set_defaults(handler=_run_delete)


def _failed(message: str) -> int:
    print(f"sluice: {message}", file=sys.stderr)
    return EXIT_FAILED


def _load(names: list[str]) -> list[documents.Document]:
    docs: list[documents.Document] = []
    for name in names:
        if name == "-":
            docs += documents.load_documents(sys.stdin.read(), "<stdin>")
            continue
        try:
            text = pathlib.Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.InvalidInput(f"{name}: {exc.strerror or exc}", path=name) from exc
        docs += documents.load_documents(text, name)
    return docs


def _run_apply(args: argparse.Namespace) -> int:
    try:
        docs = _load(args.filename)
        applying.check(docs)  # before connecting: a bad file needs no bus to be told
    except errors.InvalidInput as exc:
        return _failed(exc.message)

    async def work() -> list[applying.Applied]:
        nc = await connecting.connect(args)
        try:
            js = nc.jetstream()
            await streams.declare(
                js, buckets=(streams.CANARIES, streams.TEMPLATES), timeout_s=KV_TIMEOUT_S
            )
            return await applying.apply(
                docs,
                await js.key_value(streams.CANARIES.name),
                await js.key_value(streams.TEMPLATES.name),
                KV_TIMEOUT_S,
            )
        finally:
            await nc.close()

    try:
        applied = asyncio.run(work())
    except (connecting.CliError, errors.SluiceError) as exc:
        return _failed(str(exc))
    for item in applied:
        print(f"{item.label} {item.outcome}")
    return EXIT_OK


def _run_rollout(args: argparse.Namespace) -> int:
    try:
        ref = messages.CanaryRef(namespace=args.namespace, name=args.name)
        subject = messages.rollout_subject(ref.namespace, ref.name)
    except errors.InvalidInput as exc:
        return _failed(str(exc))
    request = messages.RolloutRequest(
        canary=ref,
        revision=args.revision,
        by=connecting.identity(args),
        timeout_s=REQUEST_TIMEOUT_S,
    )

    async def work() -> messages.Reply:
        nc = await connecting.connect(args)
        try:
            msg = await nc.request(
                subject, messages.ENCODER.encode(request), timeout=REQUEST_TIMEOUT_S
            )
        except nats.errors.NoRespondersError as exc:
            raise connecting.CliError(
                f"no watcher answers on {subject}; is the watcher running in standalone mode "
                "(SLUICE_MODE=standalone)?"
            ) from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise connecting.CliError(
                f"no answer on {subject} within {REQUEST_TIMEOUT_S:g}s"
            ) from exc
        finally:
            await nc.close()
        try:
            return messages.REPLY_DECODER.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise connecting.CliError(f"an answer that does not decode: {exc}") from exc

    try:
        reply = asyncio.run(work())
    except (connecting.CliError, errors.SluiceError) as exc:
        return _failed(str(exc))
    if isinstance(reply, messages.CommandFailed):
        return _failed(reply.error)
    if not isinstance(reply, messages.RolloutAnswer):
        return _failed(f"an unexpected answer: {type(reply).__name__}")
    if not reply.accepted:
        return _failed(reply.message)
    print(reply.message)
    return EXIT_OK


def _run_delete(args: argparse.Namespace) -> int:
    try:
        ref = messages.CanaryRef(namespace=args.namespace, name=args.name)
        messages.canary_key(ref.namespace, ref.name)
    except errors.InvalidInput as exc:
        return _failed(str(exc))

    async def work() -> str:
        nc = await connecting.connect(args)
        try:
            js = nc.jetstream()
            await streams.declare(js, buckets=(streams.CANARIES,), timeout_s=KV_TIMEOUT_S)
            store = canary_store.CanaryStore(
                await js.key_value(streams.CANARIES.name), KV_TIMEOUT_S
            )
            return await store.delete(ref)
        finally:
            await nc.close()

    try:
        outcome = asyncio.run(work())
    except errors.NotFound:
        return _failed(f'canary "{ref.name}" not found in namespace {ref.namespace}')
    except (connecting.CliError, errors.SluiceError) as exc:
        return _failed(str(exc))
    if outcome == "deleting":
        print(
            f"{ref.name} ({standalone.KIND}, {ref.namespace}) deleting: its route is given back, "
            "then it is gone"
        )
    else:
        print(f"{ref.name} ({standalone.KIND}, {ref.namespace}) deleted")
    return EXIT_OK

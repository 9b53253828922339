"""``python -m tests.fuzz``: the bus fuzz harness at scale (``make fuzz FUZZ_ARGS=...``).

    python -m tests.fuzz [--count 10000] [--subjects ticks hints ...] [--seed N] [--json out.json]
                         [--with-rollouts [N]]

Prints one row per consumed subject (sent, valid, rejected, handled, failed, dead, replies,
missing, redeliveries, RSS before → after, log MB, longest log line), what each service did,
and every invariant; exits 1 when an invariant fails, 2 when the harness could not run.
Logs and the nats-server store stay in the work directory (printed) for a closer look.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import tempfile

import pytest

from tests.fuzz import harness, model, rendering, rollouts, subjects


def _subject(value: str) -> str:
    subject = subjects.ALIASES.get(value, value)
    if subject not in subjects.ROWS:
        choices = ", ".join(f"{alias} ({row})" for alias, row in subjects.ALIASES.items())
        raise argparse.ArgumentTypeError(f"unknown subject {value!r}; one of {choices}")
    return subject


def parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = model.FuzzConfig(workdir=pathlib.Path())
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz",
        description="Fuzz Sluice's bus through a real nats-server and the consuming services.",
    )
    parser.add_argument("--count", type=int, default=1000, help="examples per subject")
    parser.add_argument(
        "--subjects",
        nargs="+",
        type=_subject,
        default=list(subjects.ROWS),
        metavar="SUBJECT",
        help="consumed subjects or their aliases: " + ", ".join(subjects.ALIASES),
    )
    parser.add_argument("--seed", type=int, default=0, help="the same seed sends the same bytes")
    parser.add_argument("--json", type=pathlib.Path, help="write the whole report here")
    parser.add_argument("--workdir", type=pathlib.Path, help="logs and NATS store (kept)")
    parser.add_argument("--nats-url", help="use this (otherwise idle) nats-server")
    parser.add_argument("--chunk", type=int, default=defaults.chunk, help="examples per batch")
    parser.add_argument(
        "--drain-timeout", type=float, default=120.0, help="seconds for the consumers to drain"
    )
    parser.add_argument(
        "--reply-cap",
        type=float,
        default=defaults.reply_cap_s,
        help="longest command timeout waited for (also SLUICE_MAX_COMMAND_TIMEOUT_S)",
    )
    parser.add_argument(
        "--fetch-timeout",
        type=float,
        default=defaults.fetch_timeout_s,
        help="SLUICE_FETCH_TIMEOUT_S of the services",
    )
    parser.add_argument(
        "--with-rollouts",
        type=int,
        nargs="?",
        const=4,
        default=0,
        metavar="N",
        help="run on a sandbox stack with N canaries in flight (default 4; half rolled back)",
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.chunk < 1:
        parser.error("--count and --chunk must be at least 1")
    if args.with_rollouts < 0:
        parser.error("--with-rollouts must be at least 1 (or left out)")
    if args.with_rollouts and args.nats_url:
        parser.error("--with-rollouts runs on the sandbox stack's nats-server, not --nats-url")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="sluice-fuzz-"))
    config = model.FuzzConfig(
        workdir=workdir,
        count=args.count,
        rows=tuple(args.subjects),
        seed=args.seed,
        nats_url=args.nats_url,
        chunk=args.chunk,
        drain_timeout_s=args.drain_timeout,
        reply_cap_s=args.reply_cap,
        fetch_timeout_s=args.fetch_timeout,
        rollouts=args.with_rollouts,
    )
    print(f"fuzzing {len(config.rows)} subjects x {config.count} examples; work dir {workdir}")
    try:
        report = asyncio.run(harness.run(config))
    except pytest.fail.Exception as exc:  # the fixtures report start-up failures this way
        print(f"the harness could not run: {exc}", file=sys.stderr)
        return 2
    print(rendering.render(report))
    if report.rollouts:
        print(rollouts.render(report.rollouts))
    if args.json:
        args.json.write_text(report.to_json())
        print(f"report written to {args.json}")
    failed = [check.name for check in report.checks if not check.ok]
    print("FAILED: " + ", ".join(failed) if failed else "all invariants hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

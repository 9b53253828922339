"""The run's order: the options, the signals (the first SIGINT/SIGTERM stops the demo, the
teardown is not interrupted), the story under the live view or plain lines, the summary, and
the teardown that leaves nothing running."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import pathlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence

from rich.console import Console

from scripts import demo as package
from scripts.demo import cluster, display, outcome, snapshot, story, tutorial


async def amain(args: argparse.Namespace, root: pathlib.Path, temporary: bool) -> int:
    console = Console()
    plain = args.plain or not console.is_terminal or console.is_dumb_terminal
    board = snapshot.Board()
    if plain:
        board.out = lambda line: print(line, flush=True)
    demo = story.Demo(root, board, args.pod_network, args.deadline)

    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(sig: int) -> None:
        if not received:  # the first one stops the demo; the teardown is not interrupted
            task.cancel()
        received.append(sig)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    report = demo.report
    try:
        with display.live_view(board, console, not plain) as live:
            refresher = asyncio.create_task(display.refresh(live, board)) if live else None
            try:
                await demo.run()
            except outcome.DemoFailure as exc:
                report.failure = str(exc)
                board.action(f"FAILED: {exc}", style="bold red")
            except asyncio.CancelledError:
                if not received:
                    raise
                task.uncancel()
                name = signal.Signals(received[0]).name
                report.failure = f"interrupted by {name}"
                board.action(f"interrupted by {name}; stopping", style="bold red")
            finally:
                if refresher is not None and live is not None:
                    refresher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await refresher
                    # the last frame leaves room for the summary below it on the screen
                    height = max(
                        display.MIN_FINAL_HEIGHT, live.console.height - display.SUMMARY_LINES
                    )
                    live.update(display.render(board, height=height), refresh=True)
    finally:  # also after a bug: leave nothing running
        report.slack_messages = len(demo.sink.payloads)
        report.wall_s = time.monotonic() - board.started
        await demo.close()
        await demo.stop_up()
        print("", flush=True)
        for line in outcome.summary(report):
            print(line, flush=True)
        stopped = await asyncio.to_thread(teardown, demo, args.keep, temporary, report)
    if received:
        return 128 + received[0]
    return 0 if report.ok and stopped else 1


def teardown(demo: story.Demo, keep: bool, temporary: bool, report: outcome.Report) -> bool:
    """Stop the stack (or, with ``keep``, say how to use it); False when something stays."""
    root = demo.root
    if keep and (root / "env").exists():
        for line in outcome.keep_instructions(root):
            print(line, flush=True)
        return True
    if demo.sandbox.stack_started:
        print(
            f"stopping the stack: python -m sandbox --dir {tutorial.shown_path(root)} down",
            flush=True,
        )
        stopped, message = cluster.down(root, demo.sandbox.env)
        print(message, flush=True)
        if not stopped:
            return False
    if not report.ok and not report.failure.startswith("interrupted"):
        print(f"logs kept in {tutorial.shown_path(root / 'logs')}", flush=True)
    elif temporary:
        shutil.rmtree(root, ignore_errors=True)
    return True


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    doc = package.__doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.demo",
        description=doc.split("\n\n", 1)[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=pathlib.Path,
        help="state directory of the demo's stack, new or empty (default: a temporary one)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack running at the end and print how to use and stop it",
    )
    parser.add_argument("--plain", action="store_true", help="plain lines instead of the live view")
    parser.add_argument(
        "--pod-network",
        type=ipaddress.IPv4Network,
        default=cluster.random_pod_network(),
        help="loopback CIDR for the stack's pod IPs (default: a free one of 127.20-39.0.0/16)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=tutorial.DEADLINE_S,
        help="seconds the demo may take, teardown excluded (default %(default)g)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if shutil.which("kubectl") is None:
        print("demo: kubectl is not on PATH; `make setup` installs it", file=sys.stderr)
        return 2
    if args.dir is None:
        root = pathlib.Path(tempfile.mkdtemp(prefix="sluice-demo-"))
        temporary = True
    else:
        root = args.dir.resolve()
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            print(
                f"demo: --dir {args.dir} is not a new or empty directory; the demo starts from a "
                f"clean cluster. Stop a stack that runs there with `python -m sandbox --dir "
                f"{args.dir} down`, then remove the directory or choose another.",
                file=sys.stderr,
            )
            return 2
        root.mkdir(parents=True, exist_ok=True)
        temporary = False
    return asyncio.run(amain(args, root, temporary))

"""``python -m tests.chaos [--runs N] [--seed S] [--json PATH] [--workdir DIR]``

Runs the seed rollout ``N`` times under injected faults (``tests.chaos.run``), run ``i`` with
seed ``S + i`` (``S`` is drawn and printed when not given). Prints one line a run, then
``k/N passed`` and, for each failed run, its seed, its faults and what failed; the same seed
with ``--runs 1`` replays that run's fault schedule exactly. A failed run's logs (services and
stack) stay in its work directory; a passed run's are removed. Exits 1 when a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import random
import shutil
import signal
import sys
import tempfile
from typing import TextIO

from tests.chaos import run, schedule


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--runs", type=_positive, default=5, help="how many runs (default 5)")
    parser.add_argument("--seed", type=int, help="seed of the first run (default: random)")
    parser.add_argument("--json", type=pathlib.Path, help="write every run's result here")
    parser.add_argument("--workdir", type=pathlib.Path, help="where runs keep their logs")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


async def session(
    runs: int, seed: int, workdir: pathlib.Path, out: TextIO = sys.stdout
) -> list[run.RunResult]:
    results = []
    for index in range(runs):
        run_seed = schedule.run_seed(seed, index)
        where = workdir / f"run-{run_seed}"
        result = await run.run(run_seed, where)
        results.append(result)
        verdict = "ok" if result.ok else "FAILED"
        timings = " ".join(f"{k} {v:.0f}s" for k, v in result.rollout_s.items())
        print(
            f"run {index + 1}/{runs} seed {run_seed}: {verdict} in {result.seconds:.0f}s "
            f"({timings}; dead letters {result.dead_letters})",
            file=out,
            flush=True,
        )
        for failure in result.failures:
            print(f"  failed: {failure}", file=out, flush=True)
        if result.ok:
            shutil.rmtree(where, ignore_errors=True)
    return results


def report(results: list[run.RunResult]) -> str:
    passed = sum(r.ok for r in results)
    lines = [f"{passed}/{len(results)} passed"]
    for result in results:
        if result.ok:
            continue
        lines.append(
            f"seed {result.seed} FAILED (replay: python -m tests.chaos --seed "
            f"{result.seed} --runs 1; logs in {result.workdir})"
        )
        lines += [f"  fault: {fault.describe()}" for fault in result.faults]
        lines += [f"  failed: {failure}" for failure in result.failures]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="sluice-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"chaos: {args.runs} runs from seed {seed} in {workdir}", flush=True)
    # SIGTERM as Ctrl-C: the run under way stops its stack (left running, it would hold its
    # pod network and ports and break the next stack on this machine)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = asyncio.run(session(args.runs, seed, workdir))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

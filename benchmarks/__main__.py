"""``python -m benchmarks``: measure Sluice's figures, print them as a table, write them as JSON.

Each figure module exposes ``run(args) -> list[Figure]`` (see ``benchmarks/harness.py``) and
runs its own processes (nats-server, the sandbox, the services). They run one after another so
that their processes never compete for the cores. A module that fails is reported as an error
row, the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import pathlib
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

from benchmarks import harness

# (module, the keys of the figures it makes); analyzer_load is optional.
MODULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("revision", ("revision_latency",)),
    ("analyzer_load", ("analyzer_step_overhead", "analyzer_capacity", "analyzer_scale_out")),
    ("bus", ("bus_round_trip",)),
    ("idle", ("idle_rss",)),
    ("loadgen_figure", ("loadgen",)),
)
OPTIONAL = {"analyzer_load"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    keys = [key for _, module_keys in MODULES for key in module_keys]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure Sluice's figures: real services over a real nats-server (and the "
        "sandbox where Kubernetes is needed); print a table; write JSON.",
        epilog="figure keys: " + ", ".join(keys),
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="KEY",
        default=[],
        help="only these figures (a figure key or a module name: "
        + ", ".join(name for name, _ in MODULES)
        + ")",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer samples and shorter waits (a smoke run, ≤ 3 min)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=pathlib.Path,
        help="write the JSON here instead of benchmarks/results/<date>.json and latest.json",
    )
    parser.add_argument("--no-json", action="store_true", help="write no JSON")
    args = parser.parse_args(argv)
    known = set(keys) | {name for name, _ in MODULES}
    unknown = [key for key in args.only if key not in known]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; expected any of {', '.join(keys)}")
    return args


def selected(args: argparse.Namespace) -> list[str]:
    if not args.only:
        return [name for name, _ in MODULES]
    wanted = set(args.only)
    return [name for name, keys in MODULES if name in wanted or wanted & set(keys)]


def load(name: str) -> Callable[[argparse.Namespace], list[harness.Figure]] | None:
    try:
        module: ModuleType = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if name in OPTIONAL and exc.name == f"benchmarks.{name}":
            return None
        raise
    run: Callable[[argparse.Namespace], list[harness.Figure]] = module.run
    return run


def error_figure(name: str, exc: BaseException) -> harness.Figure:
    return harness.Figure(
        key=name,
        title=f"{name} (failed)",
        value=f"error: {type(exc).__name__}: {exc}"[:300],
        target="-",
        met=None,
        conditions="the benchmark did not finish; see its traceback above",
        data={"error": "".join(traceback.format_exception_only(exc)).strip()},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures: list[harness.Figure] = []
    failed = False
    for name in selected(args):
        started = time.monotonic()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            run = load(name)
            if run is None:
                print(f"== {name}: not present, skipped", file=sys.stderr, flush=True)
                continue
            made = run(args)
        except Exception as exc:  # one broken figure must not hide the others
            traceback.print_exc()
            figures.append(error_figure(name, exc))
            failed = True
            continue
        if args.only:
            made = [f for f in made if f.key in args.only or name in args.only]
        figures += made
        took = time.monotonic() - started
        print(f"== {name}: {len(made)} figure(s) in {took:.0f} s", file=sys.stderr, flush=True)
    harness.print_table(figures)
    if not args.no_json:
        if args.json is not None:
            paths = [args.json]
        else:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
            paths = [harness.RESULTS / f"{stamp}.json", harness.RESULTS / "latest.json"]
        for path in paths:
            harness.write_json(figures, path)
        print(f"written: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The load generator benchmark (``python -m benchmarks.loadgen``) as a figure of the table.

It runs as its own process (it starts its own HTTP server subprocess) and reports with
``--json``; its exit status 1 only says a target was missed, which the figure shows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks import harness, loadgen

TIMEOUT_S = 120.0


def run(args: argparse.Namespace) -> list[harness.Figure]:
    duration = 4 if args.quick else 10
    with harness.workdir("loadgen") as tmp:
        out = tmp / "loadgen.json"
        argv = [sys.executable, "-m", "benchmarks.loadgen", "--duration", str(duration)]
        argv += ["--json", str(out)] + (["--skip-accuracy"] if args.quick else [])
        done = subprocess.run(
            argv, cwd=harness.REPO, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        if not out.exists():
            raise harness.BenchmarkError(
                f"benchmarks.loadgen wrote no JSON (exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
        data = json.loads(out.read_text())
    capacity, accuracy = data["capacity"], data["accuracy"]
    rps = float(capacity["requests_per_s"])
    met = rps >= loadgen.TARGET_RPS and (accuracy is None or bool(accuracy["ok"]))
    accuracy_text = (
        f"; accuracy run {accuracy['requests']}/{accuracy['expected']} requests"
        if accuracy is not None
        else "; accuracy run skipped (--quick)"
    )
    return [
        harness.Figure(
            key="loadgen",
            title="load generator capacity (webhook-runner's hey)",
            value=(f"{rps:.0f} req/s · p50 {capacity['p50_ms']} ms · p99 {capacity['p99_ms']} ms"),
            target=f"≥ {loadgen.TARGET_RPS:.0f} req/s, accuracy ± 5 %",
            met=met,
            conditions=(
                f"{harness.machine()}; {capacity['command']} ({capacity['requests']} requests, "
                f"{capacity['errors']} errors); client CPU {capacity['client_cpu_percent']} %, "
                f"server CPU {capacity['server_cpu_percent']} % of one core, client peak RSS "
                f"{capacity['client_peak_rss_mb']} MB{accuracy_text}"
            ),
            stand_ins=[
                "loadgen: the load target is a local aiohttp hello-world server, not a podinfo pod"
            ],
            data=data,
        )
    ]

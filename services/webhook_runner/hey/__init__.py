"""Sluice's ``hey``: Flagger loadtester command lines run by Sluice's own load generator.

Flagger users' Canaries ask the loadtester to run ``hey`` command lines. The webhook-runner
runs them itself, without a shell or the hey binary:

- ``parsing``: ``parse("hey -z 1m -q 10 -c 2 http://...")`` → ``Options`` (hey's flags, Go's
  flag syntax and hey's checks; ``UsageError`` otherwise);
- ``generating``: ``await run(options, stop=..., metrics=..., data_dir=..., output=...)`` →
  ``Report`` (aiohttp workers with per-worker rate schedules);
- ``recording``: ``Report``, how latencies are kept, and the Prometheus ``Metrics``;
- ``summary``: ``format_summary(report)``, hey's summary text, and its CSV lines.
"""

from services.webhook_runner.hey.generating import BodyFileError, run
from services.webhook_runner.hey.parsing import Options, UsageError, parse, parse_args
from services.webhook_runner.hey.recording import Metrics, Report
from services.webhook_runner.hey.summary import format_summary

__all__ = [
    "BodyFileError",
    "Metrics",
    "Options",
    "Report",
    "UsageError",
    "format_summary",
    "parse",
    "parse_args",
    "run",
]

"""hey's two output formats for a ``Report``: the summary and the CSV lines.

``format_summary`` lays the summary out as hey does, character for character where Sluice
measures the same thing: a leading blank line, the sections "Summary:", "Response time
histogram:" (11 buckets from the fastest to the slowest, bars of up to 40 ``■``), "Latency
distribution:" (10/25/50/75/90/95/99 %), "Details (average, fastest, slowest):", "Status code
distribution:" and, when requests failed, "Error distribution:"; two-space indents, a tab after
each label, seconds with 4 decimals, histogram marks with 3.

What differs from hey, on purpose:

- Details has no "req write" line. aiohttp hands the request headers and body to the
  transport in one buffered write when it sends the request and reports no moment at which
  the request was written, so that time cannot be measured on its own; it is part of
  "resp wait" (from the connection to the response headers). "DNS+dialup" (new connections
  only), "DNS-lookup" (0 for an IP address or a name in aiohttp's DNS cache) and "resp read"
  (reading the body) are measured.
- Percentiles follow hey's rule (the first sorted latency whose index is at or past p % of
  the count), applied to each percentile on its own. From 100 responses on that is exactly
  hey's result; below, hey can place a percentile one response late (it moves to the next
  percentile only at the next response) or print "0% in 0.0000 secs" for one it did not
  reach, where Sluice prints the latency the rule names (the slowest at worst).
- The latency distribution and the histogram come from the report's sample of latencies (all
  of them up to 1,000,000 responses; hey keeps only the first 1,000,000).

In the CSV, the "Request-write" column is ``NaN`` for the same reason (not measured) and
"Response-delay" is the "resp wait" above.
"""

from __future__ import annotations

import bisect
import math

from services.webhook_runner.hey import recording

PERCENTILES = (10, 25, 50, 75, 90, 95, 99)
HISTOGRAM_BUCKETS = 10  # intervals; hey prints one more mark than that
BAR = "■"
BAR_WIDTH = 40
CSV_HEADER = (
    "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset"
)


def _seconds(value: float) -> str:
    """Go's ``%4.4f``, NaN and infinities spelled as Go spells them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:4.4f}"


def percentiles(ordered: list[float]) -> list[tuple[int, float]]:
    """hey's percentiles of sorted latencies: the first latency at or past p % of the list."""
    n = len(ordered)
    if not n:
        return []
    return [(p, ordered[min((p * n + 99) // 100, n - 1)]) for p in PERCENTILES]


def histogram(ordered: list[float], fastest: float, slowest: float) -> list[tuple[float, int]]:
    """hey's histogram: marks from fastest to slowest in 10 equal steps; each latency counts
    in the first mark it does not exceed."""
    if not ordered:
        return []
    step = (slowest - fastest) / HISTOGRAM_BUCKETS
    marks = [fastest + step * i for i in range(HISTOGRAM_BUCKETS)] + [slowest]
    buckets: list[tuple[float, int]] = []
    below = 0
    for i, mark in enumerate(marks):
        upto = len(ordered) if i == len(marks) - 1 else bisect.bisect_right(ordered, mark)
        buckets.append((mark, upto - below))
        below = upto
    return buckets


def _histogram_lines(buckets: list[tuple[float, int]]) -> str:
    most = max((count for _, count in buckets), default=0)
    lines = []
    for mark, count in buckets:
        bar = BAR * ((count * BAR_WIDTH + most // 2) // most) if most else ""
        lines.append(f"  {mark:4.3f} [{count}]\t|{bar}\n")
    return "".join(lines)


def format_summary(report: recording.Report) -> str:
    """The summary hey prints for ``report`` (leading and trailing blank lines included)."""
    ordered = sorted(report.latencies)
    parts = [
        "\nSummary:\n",
        f"  Total:\t{_seconds(report.total_s)} secs\n",
        f"  Slowest:\t{_seconds(report.slowest_s)} secs\n",
        f"  Fastest:\t{_seconds(report.fastest_s)} secs\n",
        f"  Average:\t{_seconds(report.average_s)} secs\n",
        f"  Requests/sec:\t{_seconds(report.requests_per_s)}\n  ",
    ]
    if report.bytes_total > 0:
        parts.append(f"\n  Total data:\t{report.bytes_total} bytes")
        parts.append(f"\n  Size/request:\t{report.bytes_per_response} bytes")
    parts.append("\n\nResponse time histogram:\n")
    parts.append(_histogram_lines(histogram(ordered, report.fastest_s, report.slowest_s)))
    parts.append("\n\nLatency distribution:")
    for p, latency in percentiles(ordered):
        parts.append(f"\n  {p}% in {_seconds(latency)} secs")
    parts.append("\n\nDetails (average, fastest, slowest):\n")
    for label, phase in (
        ("DNS+dialup", report.dial),
        ("DNS-lookup", report.dns),
        ("resp wait", report.wait),
        ("resp read", report.read),
    ):
        parts.append(
            f"  {label}:\t{_seconds(phase.average_s)} secs, {_seconds(phase.fastest_s)} secs, "
            f"{_seconds(phase.slowest_s)} secs\n"
        )
    parts.append("\nStatus code distribution:")
    for code, count in sorted(report.status_codes.items()):
        parts.append(f"\n  [{code}]\t{count} responses")
    parts.append("\n\n")
    if report.errors:
        parts.append("Error distribution:")
        for message, count in sorted(report.errors.items()):
            parts.append(f"\n  [{count}]\t{message}")
    parts.append("\n\n")
    return "".join(parts)


def csv_line(
    latency: float,
    dial: float,
    dns: float,
    wait: float,
    read: float,
    status: int,
    offset: float,
) -> str:
    """One response as hey's CSV line (without the newline); Request-write is not measured."""
    return f"{latency:.4f},{dial:.4f},{dns:.4f},NaN,{wait:.4f},{read:.4f},{status},{offset:.4f}"

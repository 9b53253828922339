"""Rendering a ``model.FuzzReport`` as text: the table, the services, the checks, the timings.

``render_table`` has one row per consumed subject (sent, valid, rejected, handled, failed,
dead, replies, missing, redeliveries, RSS before → after, log MB, longest log line);
``render`` is everything ``python -m tests.fuzz`` prints after a run.
"""

from __future__ import annotations

from tests.fuzz import jetstream, model


def render_table(report: model.FuzzReport) -> str:
    header = (
        f"{'subject':<38} {'sent':>6} {'valid':>6} {'rejected':>11} {'handled':>7} "
        f"{'failed t/p':>10} {'dead':>6} {'replies':>7} {'missing':>7} {'redeliv':>7} "
        f"{'RSS MB before→after':>20} {'log MB':>7} {'max line':>9}"
    )
    lines = [header, "-" * len(header)]
    for row, r in report.rows.items():
        s = report.services.get(r.service)
        rejected = f"{r.rejected.get('undecodable', 0):.0f}/{r.predicted_undecodable}"
        failed = f"{r.failures.get('temporary', 0):.0f}/{r.failures.get('permanent', 0):.0f}"
        if r.kind == "jetstream":
            dead = str(sum(r.dead_letters.values())) if report.dead_stream_exists else "-"
            replies, missing, redeliveries = "-", "-", str(r.redeliveries)
        else:
            dead, replies, missing, redeliveries = "-", str(r.replies), str(r.missing), "-"
        rss = "-"
        log_mb, max_line = "-", "-"
        if s is not None:
            after = "exited" if s.rss_after_mb is None else f"{s.rss_after_mb:.0f}"
            rss = f"{(s.rss_before_mb or 0):.0f} → {after}"
            log_mb, max_line = f"{s.log_bytes / 1e6:.2f}", f"{s.max_line:,}"
        lines.append(
            f"{row:<38} {r.sent:>6} {r.valid:>6} {rejected:>11} {r.handled:>7.0f} {failed:>10} "
            f"{dead:>6} {replies:>7} {missing:>7} {redeliveries:>7} {rss:>20} {log_mb:>7} "
            f"{max_line:>9}"
        )
    lines.append(
        "rejected = observed/predicted undecodable; failed = temporary/permanent; dead = "
        f"messages in {jetstream.DEAD_STREAM} ('-': no such stream); RSS, log MB and max line are the "
        "consuming service's"
    )
    return "\n".join(lines)


def render_checks(report: model.FuzzReport) -> str:
    lines = []
    for c in report.checks:
        lines.append(f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.description}")
        for detail in c.details:
            lines.append("      " + detail.replace("\n", "\n      "))
    if report.harness_errors:
        lines.append("harness: " + "; ".join(report.harness_errors[:5]))
    return "\n".join(lines)


def render_services(report: model.FuzzReport) -> str:
    lines = []
    for module, s in report.services.items():
        state = "alive" if s.alive_at_end else f"EXITED ({s.exited_with})"
        lines.append(
            f"{module}: {state}, healthz {s.healthz}, readyz {s.readyz}, SIGTERM → exit "
            f"{s.stop_exit_code}, log {s.log_path}"
        )
        if s.patterns:
            lines.append(
                "    log patterns: " + ", ".join(f"{k} x{v}" for k, v in s.patterns.items())
            )
        for line in s.notable[:6]:
            lines.append(f"    {line}")
    return "\n".join(lines)


def render(report: model.FuzzReport) -> str:
    timings = ", ".join(f"{k} {v}s" for k, v in report.timings.items())
    return "\n\n".join(
        [
            render_table(report),
            render_services(report),
            render_checks(report),
            f"timings: {timings}",
        ]
    )

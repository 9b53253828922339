"""The invariants: what must hold after any run, whatever was sent.

``INVARIANTS`` names each with its one-line description (each is its own test in
``test_fuzz_bus``); ``check(report, config)`` returns one ``model.Check`` per invariant, its
details saying which subject or service broke it and how.
"""

from __future__ import annotations

from tests.fuzz import jetstream, model, rollouts, subjects, values

INVARIANTS: tuple[tuple[str, str], ...] = (
    ("processes-alive", "no service process exited"),
    ("health-at-end", "/healthz and /readyz answer 200 at the end"),
    ("commands-answered", "every command gets exactly one decodable reply within its timeout"),
    ("consumers-drained", "every durable consumer reaches 0 pending and 0 ack-pending"),
    ("redeliveries-bounded", "redeliveries stay within the per-message bound"),
    ("undecodable-counted-exactly", "every undecodable payload is counted as rejected, once"),
    ("input-errors-permanent", "no JetStream message fails temporarily or exhausts its retries"),
    ("dead-lettered", "every message a consumer gives up on is in SLUICE_DEAD, by reason"),
    ("log-lines-bounded", "no log line is longer than the limit"),
    ("log-volume-bounded", "log bytes stay within a budget per message"),
    ("no-secret-leak", f"{values.SECRET} appears in no log line and no reply"),
)


# checked when canaries were in flight (``--with-rollouts``)
ROLLOUTS_INVARIANT = (
    "rollouts-correct",
    "every rollout in flight ends promoted or rolled back as it must, no step skipped or repeated",
)


def check(report: model.FuzzReport, config: model.FuzzConfig) -> list[model.Check]:
    problems: dict[str, list[str]] = {name: [] for name, _ in INVARIANTS}
    services, rows = report.services, report.rows

    for module, s in services.items():
        if not s.alive_at_end:
            problems["processes-alive"].append(
                f"{module} exited with code {s.exited_with} during the run; log tail:\n    "
                + "\n    ".join(s.tail[-6:])
            )
        if s.healthz != 200 or s.readyz != 200:
            problems["health-at-end"].append(
                f"{module}: /healthz {s.healthz}, /readyz {s.readyz}"
                + ("" if s.alive_at_end else " (process exited)")
            )
        if s.max_line > config.log_line_limit:
            problems["log-lines-bounded"].append(
                f"{module}: longest log line {s.max_line:,} chars > {config.log_line_limit:,}; "
                f"{s.max_line_head}"
            )
        budget = config.log_bytes_base + config.log_bytes_per_message * s.messages
        if s.log_bytes > budget:
            problems["log-volume-bounded"].append(
                f"{module}: {s.log_bytes:,} log bytes > {budget:,} "
                f"({config.log_bytes_per_message} per message x {s.messages} messages "
                f"+ {config.log_bytes_base:,})"
            )
        if s.secret_lines:
            problems["no-secret-leak"].append(
                f"{module}: {s.secret_lines} log lines contain {values.SECRET}, e.g.\n    "
                + "\n    ".join(s.secret_excerpts)
            )

    for row, r in rows.items():
        predicted = r.predicted_undecodable
        observed = r.rejected.get("undecodable", 0.0)
        causes = ", ".join(f"{k} {v}" for k, v in sorted(r.undecodable_causes.items()))
        if r.kind == "command":
            busy = r.rejected.get("busy", 0.0)
            exact = observed == predicted if not busy else predicted - busy <= observed <= predicted
            if r.missing or r.late or r.duplicates or r.no_responders or r.undecodable_replies:
                problems["commands-answered"].append(
                    f"{row}: {r.sent} sent, {r.replies} answered in time, {r.missing} missing, "
                    f"{r.late} late, {r.duplicates} with several replies, "
                    f"{r.no_responders} no-responders, {r.undecodable_replies} undecodable replies"
                    + (f"; reply failures {r.reply_failures}" if r.reply_failures else "")
                    + "".join(f"\n    {sample}" for sample in r.samples)
                    + "".join(
                        f"\n    log ({r.service}) {cid}: {line}"
                        for cid, line in services[r.service].correlated.items()
                        if cid.startswith(f"fuzz-{subjects.SHORT[row]}.")
                    )
                )
            if r.secret_in_replies:
                problems["no-secret-leak"].append(
                    f"{row}: {r.secret_in_replies} replies contain {values.SECRET}"
                    + "".join(f"\n    {s}" for s in r.samples if values.SECRET in s)
                )
        else:
            exact = observed == predicted
            if not r.drained or r.num_pending or r.num_ack_pending:
                problems["consumers-drained"].append(
                    f"{row} (durable {r.durable}): num_pending {r.num_pending}, "
                    f"num_ack_pending {r.num_ack_pending} after {config.drain_timeout_s:.0f}s"
                )
            bound = config.redeliveries_per_message * max(r.unique, 1)
            if r.redeliveries > bound:
                problems["redeliveries-bounded"].append(
                    f"{row}: {r.redeliveries} redeliveries for {r.unique} messages (> {bound})"
                )
            temporary = r.failures.get("temporary", 0.0)
            if temporary or r.exhausted:
                problems["input-errors-permanent"].append(
                    f"{row}: {temporary:.0f} temporary failures, {r.exhausted} messages dropped "
                    f"after max deliveries, {r.redeliveries} redeliveries (NATS stayed up: "
                    "nothing here is worth retrying)"
                )
            given_up = r.terminated + r.exhausted
            dead_total = sum(r.dead_letters.values())
            dead_problems = []
            if given_up or predicted:
                if not report.dead_stream_exists:
                    dead_problems.append(f"stream {jetstream.DEAD_STREAM} does not exist")
                if r.dead_letters.get("undecodable", 0) != predicted:
                    dead_problems.append(
                        f"{r.dead_letters.get('undecodable', 0)} dead-lettered as undecodable, "
                        f"{predicted} predicted"
                    )
                if dead_total < given_up:
                    dead_problems.append(
                        f"{dead_total} dead letters for {r.terminated} terminated + "
                        f"{r.exhausted} exhausted messages"
                        + (
                            f" (terminated, no dead letter: stream seqs {r.terminated_not_dead})"
                            if r.terminated_not_dead
                            else ""
                        )
                    )
            if sum(r.dead_lettered_metric.values()) != dead_total:
                dead_problems.append(
                    f"sluice_messages_dead_lettered_total {r.dead_lettered_metric} vs "
                    f"{dead_total} in {jetstream.DEAD_STREAM}"
                )
            if dead_problems:
                problems["dead-lettered"].append(f"{row}: " + "; ".join(dead_problems))
        if not exact:
            problems["undecodable-counted-exactly"].append(
                f"{row}: rejected{{reason=undecodable}} = {observed:.0f}, predicted {predicted} "
                f"({causes or 'none'}); received {r.received:.0f}, sent {r.sent}"
            )
    for module, s in services.items():
        for pattern in ("Task exception was never retrieved", "RecursionError"):
            if s.patterns.get(pattern) and problems["undecodable-counted-exactly"]:
                problems["undecodable-counted-exactly"].append(
                    f"{module} log: {s.patterns[pattern]} lines with {pattern!r}"
                )
    checks = [
        model.Check(name, description, not problems[name], problems[name])
        for name, description in INVARIANTS
    ]
    if config.rollouts:
        name, description = ROLLOUTS_INVARIANT
        found = rollouts.check(report.rollouts)
        checks.append(model.Check(name, description, not found, found))
    return checks

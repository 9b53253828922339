"""The fuzz harness: real nats-server, the four consuming services as processes, real messages.

``run(config)`` starts a nats-server (or uses ``config.nats_url``) and the services that consume
the chosen subjects (analyzer, notifier, traffic_shifter, webhook_runner; the watcher consumes
nothing), sends ``config.count`` examples per subject from ``tests.fuzz.strategies``
(JetStream publishes for ticks and events, requests with a reply inbox for commands, both with
bounded concurrency), waits until every durable consumer has nothing pending or unacknowledged
(deadline-based), and measures, per subject:

    sent            messages the consumer should see (published and matched by its filter,
                    or commands sent)
    valid           of those, how many its decoder accepts (predicted here, with the decoder
                    the service uses; any exception while predicting is a reject)
    rejected        ``sluice_messages_rejected_total{subject,reason}`` (and the prediction)
    handled         JetStream: handler runs that did not fail (``handling_seconds_count`` minus
                    failures); commands: replies that are not ``CommandFailed``
    failures        ``sluice_message_failures_total{subject,decision}``
    dead            messages in ``SLUICE_DEAD`` on ``sluice.dead.<durable>`` by
                    ``Sluice-Dead-Reason`` (and ``sluice_messages_dead_lettered_total``)
    replies/missing commands answered within their own timeout / not answered, plus late,
                    duplicate, no-responder and undecodable replies
    redeliveries    consumer deliveries minus distinct messages (``num_redelivered`` peak too)

and per service: whether the process is alive, /healthz and /readyz at the end, RSS before and
after (``VmRSS``), log bytes, the longest log line, lines containing ``FUZZSECRET``.

``invariants.check`` turns that into the invariants of ``invariants.INVARIANTS``;
``rendering.render`` prints the table. Nothing here sleeps for a fixed time: every wait polls
against a deadline (the idle window at the end is a measurement: idle consumers must survive
their empty pulls).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import math
import pathlib
import time
import uuid

import nats
from nats.aio.client import Client

from libs import messages
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.fuzz import (
    commands,
    invariants,
    jetstream,
    logs,
    model,
    planning,
    processes,
    rollouts,
    subjects,
)
from tests.sandbox.e2e import support


async def run(config: model.FuzzConfig) -> model.FuzzReport:
    """Start everything, send the examples, wait, measure, stop, and check the invariants."""
    started = time.monotonic()
    config.workdir.mkdir(parents=True, exist_ok=True)
    rows_wanted = tuple(row for row in subjects.ROWS if row in config.rows)
    modules = tuple(sorted({subjects.SERVICE_OF[row] for row in rows_wanted}))
    if config.rollouts:  # real canaries need every service, the watcher too
        modules = tuple(sorted({*subjects.SERVICE_OF.values(), "watcher"}))
    # every consumer of a started service is measured, chosen or not (hints publish ticks)
    reported = tuple(
        row for row in subjects.ROWS if row in rows_wanted or subjects.SERVICE_OF[row] in modules
    )
    consumers = tuple(row for row in reported if row in subjects.JETSTREAM_ROWS)
    rows = {
        row: model.RowReport(
            row=row,
            service=subjects.SERVICE_OF[row],
            kind="jetstream" if row in subjects.JETSTREAM_ROWS else "command",
            durable=subjects.CONSUMER_OF[row].durable if row in subjects.CONSUMER_OF else "",
        )
        for row in reported
    }
    logs_dir = config.workdir / "logs"
    logs_dir.mkdir(exist_ok=True)
    factory = ServiceFactory(logs_dir)
    report = model.FuzzReport(
        config={
            k: (str(v) if isinstance(v, pathlib.Path) else v)
            for k, v in dataclasses.asdict(config).items()
        },
        rows=rows,
        services={},
    )
    server: NatsServer | None = None
    stack: support.Stack | None = None
    flight: rollouts.Flight | None = None
    procs: dict[str, ServiceProcess] = {}
    nc: Client | None = None
    sender: commands.CommandSender | None = None
    advisories = jetstream.Advisories()
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fuzz-plan")
    loop = asyncio.get_running_loop()
    try:
        env = processes.service_env(config)
        if config.rollouts:
            stack = await asyncio.to_thread(rollouts.start_stack, config.workdir)
            url = stack.env["NATS_URL"]
            env |= rollouts.service_env(stack)
        elif config.nats_url is None:
            server = NatsServer(config.workdir / "nats-store")
            server.start()
            url = server.url
        else:
            url = config.nats_url
        for module in modules:
            procs[module] = factory(module, url, **env)
        await asyncio.gather(*(proc.ready() for proc in procs.values()))
        for module, proc in procs.items():
            assert proc.proc is not None
            report.services[module] = model.ServiceReport(
                module=module,
                log_path=str(proc.log_path),
                pid=proc.proc.pid,
                rss_before_mb=processes.rss_mb(proc.proc.pid),
            )
        report.timings["start_s"] = round(time.monotonic() - started, 2)

        async def harness_error(exc: Exception) -> None:
            report.harness_errors.append(f"harness NATS client: {type(exc).__name__}: {exc}")

        nc = await nats.connect(url, name="sluice-fuzz", error_cb=harness_error)
        js = nc.jetstream(timeout=10)
        await advisories.start(nc)
        if stack is not None:  # initialized before the baselines: their retries are not fuzz
            flight = rollouts.Flight(stack, config.rollouts)
            await flight.start(nc)
            report.timings["rollouts_start_s"] = round(time.monotonic() - started, 2)
        sender = commands.CommandSender(nc, config, rows)
        await sender.start()
        baseline_metrics = {m: await processes.scrape(p) for m, p in procs.items()}
        baseline_seq = {
            row: (
                i.delivered.consumer_seq
                if (i := await jetstream.consumer_info(js, subjects.CONSUMER_OF[row]))
                else 0
            )
            for row in consumers
        }
        baseline_last = {
            stream: await jetstream.last_seq(js, stream)
            for stream in {subjects.CONSUMER_OF[row].stream for row in consumers}
        }

        # ------------------------------------------------------------- send
        send_started = time.monotonic()
        run_id = uuid.uuid4().hex[:8]
        publish_slots = asyncio.Semaphore(config.publish_concurrency)
        tick_subjects: set[str] = set()
        stored: dict[tuple[str, int], str] = {}
        generate_s = 0.0
        chunks = max(1, math.ceil(config.count / config.chunk))
        for chunk in range(chunks):
            n = min(config.chunk, config.count - chunk * config.chunk)
            began = time.monotonic()
            planned = await loop.run_in_executor(
                executor,
                planning.plan_chunk,
                rows_wanted,
                consumers,
                n,
                config,
                chunk,
                chunk * config.chunk,
                tick_subjects,
            )
            generate_s += time.monotonic() - began
            for item in planned:
                rows[item.example.row].generated += 1
                labels = rows[item.example.row].labels
                labels[item.example.label] = labels.get(item.example.label, 0) + 1

            async def submit_commands(batch: list[planning.Planned]) -> None:
                assert sender is not None
                for item in batch:
                    await sender.submit(item)

            to_publish = [p for p in planned if p.example.row in subjects.JETSTREAM_ROWS]
            by_row = [[p for p in planned if p.example.row == row] for row in subjects.COMMAND_ROWS]
            await asyncio.gather(
                *(
                    jetstream.publish(js, item, run_id, rows, publish_slots, stored)
                    for item in to_publish
                ),
                *(submit_commands(batch) for batch in by_row if batch),
            )
            del planned, to_publish, by_row
        await sender.finish()
        if flight is not None:
            finishing = time.monotonic()
            await flight.finish()
            report.rollouts = list(flight.reports.values())
            report.timings["rollouts_end_s"] = round(time.monotonic() - finishing, 2)
        report.timings["generate_s"] = round(generate_s, 2)
        report.timings["send_s"] = round(time.monotonic() - send_started - generate_s, 2)

        # ------------------------------------------------------------- drain
        drain_started = time.monotonic()
        infos = await jetstream.wait_drained(
            js, {row: rows[row] for row in consumers}, config.drain_timeout_s
        )
        # metrics are counted right after a message is settled: wait until they stand still
        snapshot: dict[str, processes.Samples | None] = {}
        deadline = time.monotonic() + 5.0
        while True:
            current = {m: await processes.scrape(p) for m, p in procs.items()}
            if current == snapshot or time.monotonic() > deadline:
                break
            snapshot = current
            await asyncio.sleep(0.2)  # polling period
        report.timings["drain_s"] = round(time.monotonic() - drain_started, 2)

        # ------------------------------------------------------------- idle window
        idle_until = time.monotonic() + config.idle_s
        while time.monotonic() < idle_until:
            if any(p.proc is not None and p.proc.poll() is not None for p in procs.values()):
                break
            await asyncio.sleep(0.1)  # polling period of a measurement window

        # ------------------------------------------------------------- measure
        collect_started = time.monotonic()
        final_metrics = {m: await processes.scrape(p) for m, p in procs.items()}
        for row, r in rows.items():
            now, before = final_metrics[r.service], baseline_metrics[r.service]
            r.received = sum(
                processes.delta(now, before, "sluice_messages_received_total", row).values()
            )
            r.rejected = processes.delta(now, before, "sluice_messages_rejected_total", row)
            r.failures = processes.delta(now, before, "sluice_message_failures_total", row)
            r.dead_lettered_metric = processes.delta(
                now, before, "sluice_messages_dead_lettered_total", row
            )
            r.reply_failures = processes.delta(now, before, "sluice_reply_failures_total", row)
            if r.kind == "jetstream":
                runs = processes.delta(now, before, "sluice_message_handling_seconds_count", row)
                r.handled = max(0.0, sum(runs.values()) - sum(r.failures.values()))
        for row in consumers:
            r, consumer = rows[row], subjects.CONSUMER_OF[row]
            info = await jetstream.consumer_info(js, consumer) or infos.get(row)
            if info is not None:
                r.num_pending, r.num_ack_pending = info.num_pending, info.num_ack_pending
                r.deliveries = info.delivered.consumer_seq - baseline_seq[row]
            if consumer.filter_subject in (messages.TICKS_ALL, messages.EVENTS_ALL):
                # the whole stream: the analyzer's own ticks count too
                r.unique = (
                    await jetstream.last_seq(js, consumer.stream) - baseline_last[consumer.stream]
                )
            else:
                r.unique = r.sent
            r.redeliveries = max(0, r.deliveries - r.unique)
            r.terminated = advisories.terminated[consumer.durable]
            r.replaced = advisories.replaced[consumer.durable]
            r.exhausted = advisories.exhausted[consumer.durable]
        report.dead_stream_exists, dead, dead_seqs = await jetstream.read_dead_letters(
            js, report.harness_errors
        )
        for row in consumers:
            durable = subjects.CONSUMER_OF[row].durable
            rows[row].dead_letters = dict(dead.get(durable, {}))
            if report.dead_stream_exists:
                terminated = advisories.terminated_seqs[durable]
                missing = set(terminated) - dead_seqs.get(durable, set())
                rows[row].terminated_not_dead = [
                    f"{seq} {stored.get((subjects.CONSUMER_OF[row].stream, seq), '(not ours)')}"
                    + (f" reason {terminated[seq]!r}" if terminated[seq] else "")
                    for seq in sorted(missing)[:3]
                ]
        sender.account()
        for module, proc in procs.items():
            service = report.services[module]
            assert proc.proc is not None
            code = proc.proc.poll()
            service.alive_at_end = code is None
            service.exited_with = code
            service.healthz = await processes.http_status(proc, "/healthz")
            service.readyz = await processes.http_status(proc, "/readyz")
            service.rss_after_mb = processes.rss_mb(proc.proc.pid) if code is None else None
            service.messages = int(
                sum(max(r.sent, r.received) for r in rows.values() if r.service == module)
            )
        report.timings["collect_s"] = round(time.monotonic() - collect_started, 2)
    finally:
        if sender is not None:
            await sender.close()
        await advisories.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        stop_codes = await asyncio.gather(*(processes.stop(proc) for proc in procs.values()))
        for (module, _), code in zip(procs.items(), stop_codes, strict=True):
            if module in report.services:
                report.services[module].stop_exit_code = code
        if server is not None:
            server.stop()
        if flight is not None:
            await flight.cancel()
        if stack is not None:
            await asyncio.to_thread(support.stop_stack_blocking, stack)
        executor.shutdown(wait=False, cancel_futures=True)
    sampled = sender.sampled if sender is not None else set()
    for service in report.services.values():
        logs.analyse_log(pathlib.Path(service.log_path), service, sampled)
    report.timings["total_s"] = round(time.monotonic() - started, 2)
    report.checks = invariants.check(report, config)
    return report

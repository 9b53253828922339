"""webhook-runner: the only service that calls user URLs and makes load.

Answers ``sluice.cmd.webhook.run`` in queue group ``webhook-runner``; any number of replicas
share the load. Every replica also serves the flagger-loadtester HTTP API (``loadtester``) on
``SLUICE_LOADTESTER_PORT``: load tests with Sluice's own hey (``hey``), other tasks when allowed
(``tasks``), and gates kept in NATS KV so every replica answers the same (``gates``).

A command is not trusted: a hook's timeout and retries are clamped to this service's
``webhook_max_timeout_s`` and ``webhook_max_retries``, and one call (all attempts and backoff
sleeps) ends before the command's own ``timeout_s`` with a ``WebhookResult``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pathlib
import re

from aiohttp import web

from libs import lifecycle, messages, serving, settings, streams
from services.webhook_runner import calling, gates, hey, loadtester, tasks

log = logging.getLogger(__name__)


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    webhook_backoff_base_s: float = 0.5
    webhook_backoff_max_s: float = 8.0
    webhook_max_timeout_s: float = 60.0  # one attempt never waits longer, whatever the hook says
    webhook_max_retries: int = 10  # a hook's retries are capped at this
    loadtester_host: str = "127.0.0.1"  # 0.0.0.0 in a pod, behind Service flagger-loadtester
    loadtester_port: int = 8080  # 0: any free port (the chosen one is logged)
    loadtester_namespace_regexp: str = (
        ""  # only canaries in matching namespaces (as -namespace-regexp)
    )
    loadtester_shell_namespaces: str = ""  # comma-separated; "*" = all; empty: shell tasks refused
    loadtester_task_timeout_s: float = 3600.0  # a task never runs longer (flagger-loadtester: 1h)
    loadtester_output_max_bytes: int = 65536  # output of a shell-class task kept beyond this is cut
    loadtester_data_dir: str = ""  # where hey -D may read request bodies; empty: -D refused
    loadtester_max_tasks: int = 32  # tasks running at once on one replica; more answer 429
    loadtester_max_workers: int = 1000  # hey -c (concurrent workers) of one task at most
    # a running load test refreshes its claim in sluice_tasks this often; one silent for three
    # of them is taken over by another replica (its own died)
    loadtester_claim_heartbeat_s: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("webhook_backoff_base_s", "webhook_backoff_max_s"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"{name}: expected 0 or a positive number of seconds, got {value}")
        if not 0 < self.webhook_max_timeout_s < math.inf:
            raise ValueError(
                "webhook_max_timeout_s: expected a positive number of seconds, "
                f"got {self.webhook_max_timeout_s}"
            )
        if self.webhook_max_retries < 0:
            raise ValueError(
                f"webhook_max_retries: expected 0 or more, got {self.webhook_max_retries}"
            )
        if not 0 <= self.loadtester_port <= 65535:
            raise ValueError(f"loadtester_port: expected 0..65535, got {self.loadtester_port}")
        try:
            re.compile(self.loadtester_namespace_regexp)
        except re.error as exc:
            raise ValueError(
                f"loadtester_namespace_regexp: expected a regular expression, got "
                f"{self.loadtester_namespace_regexp!r} ({exc})"
            ) from None
        if not 0 < self.loadtester_claim_heartbeat_s <= streams.TASKS.ttl_s / 3:
            raise ValueError(
                "loadtester_claim_heartbeat_s: expected a positive number of seconds, at most "
                f"{streams.TASKS.ttl_s / 3:g} (a third of the claims' TTL), "
                f"got {self.loadtester_claim_heartbeat_s}"
            )
        for name in ("loadtester_task_timeout_s",):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(
                    f"{name}: expected a positive number of seconds, got {getattr(self, name)}"
                )
        for name in (
            "loadtester_output_max_bytes",
            "loadtester_max_tasks",
            "loadtester_max_workers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if self.loadtester_data_dir and not pathlib.Path(self.loadtester_data_dir).is_dir():
            raise ValueError(
                f"loadtester_data_dir: expected a directory, got {self.loadtester_data_dir!r}"
            )

    def task_settings(self) -> tasks.Settings:
        return tasks.Settings(
            shell_namespaces=frozenset(
                n.strip() for n in self.loadtester_shell_namespaces.split(",") if n.strip()
            ),
            task_timeout_s=self.loadtester_task_timeout_s,
            output_max_bytes=self.loadtester_output_max_bytes,
            data_dir=pathlib.Path(self.loadtester_data_dir) if self.loadtester_data_dir else None,
            max_tasks=self.loadtester_max_tasks,
            max_workers=self.loadtester_max_workers,
            claim_ttl_s=streams.TASKS.ttl_s,
            claim_heartbeat_s=self.loadtester_claim_heartbeat_s,
        )


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    await streams.declare(
        rt.js,
        streams=(streams.EVENTS,),
        buckets=(streams.GATES, streams.TASKS),
        timeout_s=cfg.nats_request_timeout_s,
        replicas=cfg.stream_replicas,
    )
    runner = tasks.TaskRunner(
        rt,
        await rt.js.key_value(streams.TASKS.name),
        cfg.task_settings(),
        hey.recording.Metrics(rt.metrics.registry),
    )
    api = loadtester.LoadtesterApi(
        rt,
        gates.GateStore(rt, await rt.js.key_value(streams.GATES.name)),
        runner,
        re.compile(cfg.loadtester_namespace_regexp) if cfg.loadtester_namespace_regexp else None,
    )
    rt.spawn("loadtester", serve_loadtester(rt, cfg, api, runner))
    caller = calling.WebhookCaller(
        cfg.webhook_backoff_base_s,
        cfg.webhook_backoff_max_s,
        max_timeout_s=cfg.webhook_max_timeout_s,
        max_retries=cfg.webhook_max_retries,
    )
    rt.on_close(caller.close)

    async def run_webhook(command: messages.RunWebhook) -> messages.Reply:
        # the time serve_requests gives this handler (the command's timeout_s, clamped), less a
        # margin so the WebhookResult reaches the requester before it gives up
        budget_s = calling.budget_for(serving.command_timeout(command, rt))
        return await caller.call(command, budget_s=budget_s)

    rt.spawn(
        "webhooks",
        serving.serve_requests(
            rt,
            messages.CMD_WEBHOOK,
            messages.QUEUE_WEBHOOK_RUNNER,
            messages.WEBHOOK_DECODER,
            run_webhook,
        ),
    )


async def serve_loadtester(
    rt: lifecycle.Runtime, cfg: Settings, api: loadtester.LoadtesterApi, runner: tasks.TaskRunner
) -> None:
    """Serve the loadtester API until the service stops; then end the tasks still running."""
    http = web.AppRunner(api.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await http.setup()
    try:
        site = web.TCPSite(http, cfg.loadtester_host, cfg.loadtester_port)
        await site.start()
        port = int(http.addresses[0][1])
        log.info("loadtester API listening on http://%s:%d", cfg.loadtester_host, port)
        await rt.stopping.wait()
    finally:
        await runner.stop()
        await asyncio.shield(http.cleanup())

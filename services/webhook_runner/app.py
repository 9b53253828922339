"""webhook-runner: the only service that calls user URLs.

Answers ``sluice.cmd.webhook.run`` in queue group ``webhook-runner``; any number of replicas
share the load. (The Flagger-loadtester-compatible HTTP API joins this service later.)
"""

from __future__ import annotations

from libs import bus, lifecycle, messages, settings
from services.webhook_runner import calling


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    webhook_backoff_base_s: float = 0.5
    webhook_backoff_max_s: float = 8.0


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    caller = calling.WebhookCaller(cfg.webhook_backoff_base_s, cfg.webhook_backoff_max_s)
    rt.on_close(caller.close)

    async def run_webhook(command: messages.RunWebhook) -> messages.Reply:
        return await caller.call(command)

    rt.spawn(
        "webhooks",
        bus.serve_requests(
            rt,
            messages.CMD_WEBHOOK,
            messages.QUEUE_WEBHOOK_RUNNER,
            messages.WEBHOOK_DECODER,
            run_webhook,
        ),
    )

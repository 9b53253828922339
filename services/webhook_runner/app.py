"""webhook-runner: the only service that calls user URLs.

Answers ``sluice.cmd.webhook.run`` in queue group ``webhook-runner``; any number of replicas
share the load. (The Flagger-loadtester-compatible HTTP API joins this service later.)

A command is not trusted: a hook's timeout and retries are clamped to this service's
``webhook_max_timeout_s`` and ``webhook_max_retries``, and one call (all attempts and backoff
sleeps) ends before the command's own ``timeout_s`` with a ``WebhookResult``.
"""

from __future__ import annotations

import math

from libs import lifecycle, messages, serving, settings
from services.webhook_runner import calling


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    webhook_backoff_base_s: float = 0.5
    webhook_backoff_max_s: float = 8.0
    webhook_max_timeout_s: float = 60.0  # one attempt never waits longer, whatever the hook says
    webhook_max_retries: int = 10  # a hook's retries are capped at this

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


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
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

"""Calling one user webhook the way Flagger does.

POST JSON ``{"name", "namespace", "phase", "checksum", "metadata"}`` to the hook's URL with the
hook's timeout (default 10s). Connection errors, timeouts, 5xx and 429 are retried up to
``retries`` times with exponential backoff; success is an HTTP status <= 202.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import msgspec

from libs import logs, messages

log = logging.getLogger(__name__)

BODY_EXCERPT = 512  # characters of a response body kept in the result message


class FlaggerPayload(msgspec.Struct, frozen=True, kw_only=True):
    """The body Flagger posts to every webhook (what existing webhook servers parse)."""

    name: str
    namespace: str
    phase: str
    checksum: str = ""
    metadata: dict[str, str] = {}


_ENCODER = msgspec.json.Encoder()


def payload(command: messages.RunWebhook) -> bytes:
    return _ENCODER.encode(
        FlaggerPayload(
            name=command.canary.name,
            namespace=command.canary.namespace,
            phase=str(command.phase),
            checksum=command.checksum,
            metadata=command.webhook.metadata,
        )
    )


def retryable(status: int) -> bool:
    return status >= 500 or status == 429


class WebhookCaller:
    """Holds one HTTP session; honours HTTP_PROXY/NO_PROXY so in-cluster names can resolve."""

    def __init__(self, backoff_base_s: float = 0.5, backoff_max_s: float = 8.0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=True)
        return self._session

    async def call(self, command: messages.RunWebhook) -> messages.WebhookResult:
        hook = command.webhook
        body = payload(command)
        started = time.perf_counter()
        attempts = 0
        status: int | None = None
        message = ""
        url_for_logs = logs.redact_url(hook.url)
        while True:
            attempts += 1
            try:
                async with self._client().post(
                    hook.url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=hook.timeout_s),
                    ssl=not hook.disable_tls,
                ) as response:
                    status = response.status
                    message = (await response.text(errors="replace"))[:BODY_EXCERPT]
                if not retryable(status):
                    break
            except TimeoutError:
                status, message = None, f"no answer within {hook.timeout_s}s"
            except aiohttp.ClientError as exc:
                status, message = None, f"{type(exc).__name__}: {exc}"
            if attempts > hook.retries:
                break
            delay = min(self.backoff_base_s * 2 ** (attempts - 1), self.backoff_max_s)
            log.info(
                "webhook %s (%s) attempt %d failed (%s); retrying in %.1fs",
                hook.name,
                url_for_logs,
                attempts,
                status or message,
                delay,
            )
            await asyncio.sleep(delay)
        ok = status is not None and status <= 202
        return messages.WebhookResult(
            canary=command.canary,
            webhook=hook.name,
            type=hook.type,
            ok=ok,
            status_code=status,
            attempts=attempts,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            message=message.strip(),
        )

"""Calling one user webhook the way Flagger does.

POST JSON ``{"name", "namespace", "phase", "checksum", "metadata"}`` to the hook's URL with the
hook's timeout (default 10s). Connection errors, timeouts, 5xx and 429 are retried up to
``retries`` times with exponential backoff; success is an HTTP status <= 202.

The command is not trusted:

- the URL is checked before anything is sent (http or https, a host, no control characters);
  an invalid one is answered at once and never retried;
- the hook's timeout is clamped to ``MIN_ATTEMPT_S .. max_timeout_s`` and its retries to
  ``0 .. max_retries`` (NaN, infinities and negative values included); a clamp is logged and
  noted in the result message;
- the whole call (attempts and backoff sleeps) fits in a time budget the caller passes
  (``budget_for(command.timeout_s)``): no attempt or sleep starts that cannot end before it,
  each attempt's timeout is capped by the time left, and a call that runs out of budget
  reports a failed ``WebhookResult`` instead of being cut off;
- error texts are ``scrub``-bed before they reach a result message or a log line, so the
  URL's path, query and credentials (where tokens live) never leave this module.
"""

from __future__ import annotations

import asyncio
import logging
import math

import aiohttp
import msgspec

from libs import logs, messages
from services.webhook_runner import urls

log = logging.getLogger(__name__)

BODY_EXCERPT = 512  # characters of a response body kept in the result message
BODY_READ_BYTES = 64 * 1024  # at most this much of a response body is read
MIN_ATTEMPT_S = 0.1  # no attempt is given less time than this (nor started with less left)
DEFAULT_TIMEOUT_S = 10.0  # Flagger's default; used when a hook's timeout is NaN
BUDGET_MARGIN_FRACTION = 0.05  # of the command's timeout, kept back so the reply arrives in time
BUDGET_MARGIN_MIN_S = 0.2
_MAX_BACKOFF_EXPONENT = 60  # 2**60 times any sane base is far past any backoff cap


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


def _seconds(value: float) -> str:
    """``60.0`` → ``60``, ``1e9`` → ``1e+09``, ``2.79993`` → ``2.8``."""
    return f"{value:.3g}"


# ----------------------------------------------------------------------------- limits


class Limits(msgspec.Struct, frozen=True):
    """A hook's timeout and retries after clamping, and what was clamped (for people)."""

    timeout_s: float
    retries: int
    notes: tuple[str, ...] = ()


def clamp_limits(timeout_s: float, retries: int, max_timeout_s: float, max_retries: int) -> Limits:
    """Clamp a hook's ``timeout_s`` to ``[MIN_ATTEMPT_S, max_timeout_s]`` and its ``retries``
    to ``[0, max_retries]``; NaN means Flagger's default timeout (itself clamped)."""
    floor = min(MIN_ATTEMPT_S, max_timeout_s)
    notes: list[str] = []
    wanted = DEFAULT_TIMEOUT_S if math.isnan(timeout_s) else timeout_s
    timeout = min(max(wanted, floor), max_timeout_s)
    if math.isnan(timeout_s) or timeout != timeout_s:
        notes.append(f"timeout {_seconds(timeout_s)}s clamped to {_seconds(timeout)}s")
    clamped_retries = min(max(retries, 0), max_retries)
    if clamped_retries != retries:
        notes.append(f"retries {retries} clamped to {clamped_retries}")
    return Limits(timeout, clamped_retries, tuple(notes))


def budget_for(command_timeout_s: float) -> float:
    """Seconds one command may spend calling its hook: the command's timeout minus a margin
    (5%, at least 0.2s) so the reply reaches the requester before it gives up. Never negative;
    NaN gives 0 (nothing is started), infinity stays infinite (the hook's limits still bound
    the call)."""
    if math.isnan(command_timeout_s):
        return 0.0
    if math.isinf(command_timeout_s):
        return max(command_timeout_s, 0.0)
    margin = max(command_timeout_s * BUDGET_MARGIN_FRACTION, BUDGET_MARGIN_MIN_S)
    return max(command_timeout_s - margin, 0.0)


# ----------------------------------------------------------------------------- calling


class WebhookCaller:
    """Holds one HTTP session; honours HTTP_PROXY/NO_PROXY so in-cluster names can resolve."""

    def __init__(
        self,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_timeout_s: float = 60.0,
        max_retries: int = 10,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_timeout_s = max_timeout_s
        self.max_retries = max_retries

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=True)
        return self._session

    def backoff(self, attempts: int) -> float:
        exponent = min(max(attempts - 1, 0), _MAX_BACKOFF_EXPONENT)
        return float(min(self.backoff_base_s * 2**exponent, self.backoff_max_s))

    async def call(
        self, command: messages.RunWebhook, *, budget_s: float
    ) -> messages.WebhookResult:
        """Call the hook; end within ``budget_s`` seconds (see ``budget_for``)."""
        hook = command.webhook
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = 0.0 if math.isnan(budget_s) else max(budget_s, 0.0)
        deadline = started + budget
        url_for_logs = logs.redact_url(hook.url)

        def result(
            ok: bool, status: int | None, attempts: int, message: str
        ) -> messages.WebhookResult:
            return messages.WebhookResult(
                canary=command.canary,
                webhook=hook.name,
                type=hook.type,
                ok=ok,
                status_code=status,
                attempts=attempts,
                duration_ms=round((loop.time() - started) * 1000, 3),
                message=message.strip(),
            )

        problem = urls.url_problem(hook.url)
        if problem is not None:
            log.warning("webhook %s (%s): invalid url: %s", hook.name, url_for_logs, problem)
            return result(False, None, 0, f"invalid webhook url: {problem}")

        limits = clamp_limits(hook.timeout_s, hook.retries, self.max_timeout_s, self.max_retries)
        if limits.notes:
            log.warning("webhook %s (%s): %s", hook.name, url_for_logs, "; ".join(limits.notes))
        body = payload(command)
        attempts = 0
        status: int | None = None
        message = ""
        while True:
            remaining = deadline - loop.time()
            if remaining < MIN_ATTEMPT_S:
                message = self._out_of_budget(budget, attempts, message)
                log.warning("webhook %s (%s): %s", hook.name, url_for_logs, message)
                break
            attempt_timeout = min(limits.timeout_s, remaining)
            attempts += 1
            again = timed_out = False
            try:
                async with (
                    asyncio.timeout(attempt_timeout),
                    self._client().post(
                        hook.url,
                        data=body,
                        headers={"Content-Type": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=attempt_timeout),
                        ssl=not hook.disable_tls,
                    ) as response,
                ):
                    status = response.status
                    # a hook's answer is read only as far as the result can use it
                    head = await response.content.read(BODY_READ_BYTES)
                    text = head.decode(response.charset or "utf-8", errors="replace")
                    message = urls.scrub(text, hook.url, other_urls=False)[:BODY_EXCERPT]
                again = retryable(status)
            except TimeoutError:
                status, message = None, f"no answer within {_seconds(attempt_timeout)}s"
                again = timed_out = True
            except aiohttp.InvalidURL as exc:  # e.g. a redirect to a bad URL: retrying cannot help
                status, message = None, urls.scrub(f"{type(exc).__name__}: {exc}", hook.url)
            except aiohttp.ClientError as exc:
                status, message = None, urls.scrub(f"{type(exc).__name__}: {exc}", hook.url)
                again = True
            except Exception as exc:  # a request aiohttp refused to make; its text may hold the URL
                status, message = None, urls.scrub(f"{type(exc).__name__}: {exc}", hook.url)
                log.error(
                    "webhook %s (%s) could not be called: %s", hook.name, url_for_logs, message
                )
            if timed_out and attempt_timeout < limits.timeout_s:  # cut short by the budget
                message = self._out_of_budget(budget, attempts, message)
                log.warning("webhook %s (%s): %s", hook.name, url_for_logs, message)
                break
            if not again or attempts > limits.retries:
                break
            delay = self.backoff(attempts)
            if loop.time() + delay + MIN_ATTEMPT_S > deadline:
                message = self._out_of_budget(budget, attempts, message)
                log.warning("webhook %s (%s): %s", hook.name, url_for_logs, message)
                break
            log.info(
                "webhook %s (%s) attempt %d failed (%s); retrying in %.1fs",
                hook.name,
                url_for_logs,
                attempts,
                status or message,
                delay,
            )
            await asyncio.sleep(delay)
        if limits.notes:
            message = f"{message.strip()} ({'; '.join(limits.notes)})"
        return result(status is not None and status <= 202, status, attempts, message)

    @staticmethod
    def _out_of_budget(budget: float, attempts: int, last: str) -> str:
        if attempts == 0:
            return f"time budget of {_seconds(budget)}s ran out before the first attempt"
        plural = "" if attempts == 1 else "s"
        text = f"time budget of {_seconds(budget)}s ran out after {attempts} attempt{plural}"
        return f"{text}; last: {last.strip()}" if last.strip() else text

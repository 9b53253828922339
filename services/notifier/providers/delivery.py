"""Posting one notice to one target, the way Flagger's ``postMessage`` does, but bounded.

Flagger posts JSON once with a 5 s timeout and calls any 2xx a success. ``Sender`` keeps that
request (JSON, ``Authorization: Bearer`` for Slack tokens, the AlertProvider's proxy, 5 s per
attempt) and adds what a service that must not lose alerts, nor stall on them, needs:

- connection errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter
  (tenacity), at most ``max_attempts`` times; a 429 or 503 with ``Retry-After`` (seconds or an
  HTTP date) waits what the provider asked, capped at ``max_retry_after_s``;
- other answers are final: 2xx is delivered (200-202 for event webhooks, as Flagger's
  ``callWebhook``), any other 4xx fails at once, and redirects are not followed (a redirect
  would carry the body, and a Slack token, to a host nobody configured);
- one ``send`` never outlasts its deadline (``deadline_s``): an attempt's timeout is cut to the
  time left, and a retry whose wait would end past the deadline is not made; so a dead
  provider cannot hold the event stream;
- it always answers with a ``Delivered``; no aiohttp or tenacity exception escapes.

Proxies: a target's ``proxy`` (AlertProvider ``spec.proxy``) is used for that target only. The
``HTTP(S)_PROXY`` / ``NO_PROXY`` environment is ignored unless ``trust_env=True``: the default
is off so that a proxy set for other reasons (the sandbox's in-cluster name proxy, one meant
for the webhook-runner) never sees chat traffic or tokens by accident. Flagger's Go client does
read that environment when ``spec.proxy`` is empty, so a deployment relying on an egress proxy
from the environment turns ``trust_env`` on.

Secrets: a webhook URL's path and query and the token are credentials. Log lines and
``Delivered.error`` name a target by ``logs.redact_url`` only, and every text taken from an
exception or a response body is scrubbed of the URL, its parts, the token and the proxy's
credentials first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import http
import logging
import math
import re
import urllib.parse
from types import TracebackType

import aiohttp
import msgspec
import tenacity

from libs import logs
from services.notifier.providers import notices, payloads

log = logging.getLogger(__name__)

MIN_ATTEMPT_S = 0.05  # no attempt is started with less time than this before the deadline
DEADLINE_GRACE_S = 0.25  # the backstop timeout fires this long after the deadline
MAX_DEADLINE_S = 3600.0  # a per-call deadline is clamped to 0..this
BODY_READ_BYTES = 4096  # at most this much of a response body is read
ERROR_BODY_CHARS = 200  # characters of a response body kept in an error text
ERROR_CHARS = 500  # an error text is clipped to this
RETRY_AFTER_STATUSES = frozenset({429, 503})

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_ANY_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
_WHITESPACE_RUN = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+(\.\d+)?")


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    """How one ``send`` ended. ``status`` is the last HTTP status (``None``: no answer);
    ``attempts`` counts requests made (0 when the target was refused before any);
    ``error`` is empty on success and never holds a secret."""

    ok: bool
    status: int | None
    attempts: int
    error: str = ""


def retryable(status: int) -> bool:
    """Worth another attempt: 429 and every 5xx."""
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: datetime.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delay-seconds or an HTTP date (a date in
    the past is 0). ``None`` when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        when = when.replace(tzinfo=datetime.UTC)
    current = now or datetime.datetime.now(datetime.UTC)
    return max((when - current).total_seconds(), 0.0)


def url_problem(url: str, *, what: str = "url") -> str | None:
    """What makes ``url`` unusable, in words that never quote it; ``None`` when it is fine."""
    if not url.strip():
        return f"{what} is empty"
    if _CONTROL.search(url.strip()):
        return f"{what} contains whitespace or control characters"
    try:
        parts = urllib.parse.urlsplit(url.strip())
        _ = parts.port  # raises for a bad port
    except ValueError:
        return f"{what} cannot be parsed"
    if parts.scheme.lower() not in ("http", "https"):
        return f"{what} must be http or https"
    if not parts.hostname:
        return f"{what} has no host"
    return None


class _Scrubber:
    """Replaces every spelling of a target's secrets in a text by its redacted form."""

    def __init__(self, target: notices.Target, url: str) -> None:
        forms: dict[str, str] = {}

        def add(text: str, replacement: str) -> None:
            if text and text not in ("/", "?", "//"):
                forms.setdefault(text, replacement)

        for raw, kind in ((url, "url"), (target.url, "url"), (target.proxy, "proxy")):
            for text in {raw, raw.strip()}:
                if not text:
                    continue
                add(text, logs.redact_url(text))
                try:
                    parts = urllib.parse.urlsplit(text)
                except ValueError:
                    continue
                add(parts.path + ("?" + parts.query if parts.query else ""), "/…")
                if len(parts.path) > 1:
                    add(parts.path, "/…")
                add(parts.query, "…")
                add(urllib.parse.unquote(parts.path), "/…")
                add(urllib.parse.unquote(parts.query), "…")
                userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
                add(userinfo, "…")
                if kind == "proxy" and parts.password:
                    add(parts.password, "…")
        add(target.token, "<token>")
        self._forms = forms
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
            if forms
            else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: self._forms[m.group(0)], text)
        text = _ANY_URL.sub(lambda m: logs.redact_url(m.group(0)), text)
        return logs.clip(_WHITESPACE_RUN.sub(" ", text).strip(), ERROR_CHARS)


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    """One attempt: the status (``None``: no answer), whether to try again, and why not ok."""

    status: int | None
    again: bool
    error: str = ""
    retry_after: float | None = None


@dataclasses.dataclass(slots=True)
class _Progress:
    attempts: int = 0
    last: _Outcome | None = None
    gave_up: str = ""  # "deadline" or "attempts" when retrying stopped with a retryable outcome


def _positive(name: str, value: float) -> float:
    if not 0 < value < math.inf:
        raise ValueError(f"{name}: expected a positive number of seconds, got {value}")
    return value


def _phrase(status: int) -> str:
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _seconds(value: float) -> str:
    return f"{value:.3g}s"


class Sender:
    """Posts notices; holds one ``aiohttp.ClientSession``, created on first use and closed by
    ``close()`` (or ``async with``). Safe to share between concurrent ``send`` calls."""

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        deadline_s: float = 15.0,
        max_attempts: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 4.0,
        max_retry_after_s: float = 10.0,
        trust_env: bool = False,
    ) -> None:
        """``timeout_s``: one attempt (Flagger: 5 s). ``deadline_s``: one whole ``send``, the
        default for ``send(deadline_s=...)``; keep it well under the notifier consumer's ack
        wait (30 s). ``max_attempts``: requests per send. ``backoff_*``: exponential backoff
        with jitter between attempts. ``max_retry_after_s``: the longest ``Retry-After``
        honoured. ``trust_env``: read ``HTTP(S)_PROXY``/``NO_PROXY`` for targets without a
        proxy of their own."""
        self.timeout_s = _positive("timeout_s", timeout_s)
        self.deadline_s = _positive("deadline_s", deadline_s)
        self.backoff_base_s = _positive("backoff_base_s", backoff_base_s)
        self.backoff_max_s = _positive("backoff_max_s", backoff_max_s)
        self.max_retry_after_s = _positive("max_retry_after_s", max_retry_after_s)
        if max_attempts < 1:
            raise ValueError(f"max_attempts: expected at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.trust_env = trust_env
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=backoff_base_s, max=backoff_max_s, jitter=backoff_base_s
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=self.trust_env)
        return self._session

    # ------------------------------------------------------------------------- sending

    async def send(
        self, target: notices.Target, notice: notices.Notice, *, deadline_s: float | None = None
    ) -> Delivered:
        """Post ``notice`` to ``target``; return within ``deadline_s`` (default: the
        constructor's) with how it went. Never raises for network or provider trouble."""
        loop = asyncio.get_running_loop()
        budget = self.deadline_s if deadline_s is None else deadline_s
        budget = 0.0 if math.isnan(budget) else min(max(budget, 0.0), MAX_DEADLINE_S)
        deadline = loop.time() + budget
        # secrets read from files often end in a newline: surrounding whitespace is dropped
        url = payloads.destination(target).strip()
        proxy = target.proxy.strip()
        where = f"{target.type} {logs.redact_url(url)}"

        problem = url_problem(url) or (url_problem(proxy, what="proxy") if proxy else None)
        if problem is not None:
            log.warning("%s: not sent: %s", where, problem)
            return Delivered(ok=False, status=None, attempts=0, error=problem)
        if budget < MIN_ATTEMPT_S:
            error = f"deadline of {_seconds(budget)} leaves no time for an attempt"
            log.warning("%s: not sent: %s", where, error)
            return Delivered(ok=False, status=None, attempts=0, error=error)

        body = payloads.encode(payloads.payload(target, notice))
        headers = payloads.headers(target)
        scrub = _Scrubber(target, url)
        progress = _Progress()

        async def attempt() -> _Outcome:
            progress.attempts += 1
            timeout = max(min(self.timeout_s, deadline - loop.time()), MIN_ATTEMPT_S / 10)
            outcome = await self._post(url, proxy, target, body, headers, timeout, scrub)
            progress.last = outcome
            return outcome

        def wait(state: tenacity.RetryCallState) -> float:
            outcome = progress.last
            if outcome is not None and outcome.retry_after is not None:
                return min(outcome.retry_after, self.max_retry_after_s)
            return float(self._backoff(state))

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= self.max_attempts:
                progress.gave_up = "attempts"
                return True
            if loop.time() + state.upcoming_sleep + MIN_ATTEMPT_S > deadline:
                progress.gave_up = "deadline"
                return True
            return False

        def before_sleep(state: tenacity.RetryCallState) -> None:
            last = progress.last
            log.info(
                "%s: attempt %d failed (%s); retrying in %s",
                where,
                state.attempt_number,
                last.error if last is not None else "?",
                _seconds(state.upcoming_sleep),
            )

        def last_outcome(state: tenacity.RetryCallState) -> _Outcome:
            assert progress.last is not None  # stop runs only after an attempt
            return progress.last

        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_result(lambda outcome: outcome.again),
            wait=wait,
            stop=stop,
            before_sleep=before_sleep,
            retry_error_callback=last_outcome,
        )
        try:
            async with asyncio.timeout_at(deadline + DEADLINE_GRACE_S):  # backstop only
                outcome: _Outcome = await retrying(attempt)
        except TimeoutError:
            last = progress.last
            outcome = _Outcome(
                status=last.status if last else None,
                again=True,
                error=last.error if last and last.error else "no answer",
            )
            progress.gave_up = "deadline"
        return self._result(target, where, budget, progress, outcome)

    def _result(
        self,
        target: notices.Target,
        where: str,
        budget: float,
        progress: _Progress,
        outcome: _Outcome,
    ) -> Delivered:
        ok = outcome.status is not None and payloads.success(target, outcome.status)
        n = progress.attempts
        plural = "" if n == 1 else "s"
        if ok:
            log.debug("%s: delivered (HTTP %s, %d attempt%s)", where, outcome.status, n, plural)
            return Delivered(ok=True, status=outcome.status, attempts=n)
        error = outcome.error or _phrase(outcome.status or 0)
        if outcome.again and progress.gave_up == "deadline":
            error = f"gave up at the {_seconds(budget)} deadline after {n} attempt{plural}: {error}"
        elif outcome.again and progress.gave_up == "attempts":
            error = f"gave up after {n} attempt{plural}: {error}"
        # INFO, not WARNING: the caller owns the failure (it logs it with the canary's context)
        log.info("%s: not delivered: %s", where, error)
        return Delivered(ok=False, status=outcome.status, attempts=n, error=error)

    async def _post(
        self,
        url: str,
        proxy: str,
        target: notices.Target,
        body: bytes,
        headers: dict[str, str],
        timeout: float,
        scrub: _Scrubber,
    ) -> _Outcome:
        try:
            async with (
                asyncio.timeout(timeout),
                self._client().post(
                    url,
                    data=body,
                    headers=headers,
                    proxy=proxy or None,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response,
            ):
                status = response.status
                head = await response.content.read(BODY_READ_BYTES)
                charset = response.charset or "utf-8"
                retry_after = (
                    parse_retry_after(response.headers.get("Retry-After"))
                    if status in RETRY_AFTER_STATUSES
                    else None
                )
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            return _Outcome(None, True, f"no answer within {_seconds(timeout)}")
        except aiohttp.ClientSSLError as exc:  # a certificate does not fix itself in seconds
            return _Outcome(None, False, scrub(f"TLS error: {exc.os_error}"))
        except aiohttp.ClientProxyConnectionError as exc:
            return _Outcome(None, True, scrub(f"cannot connect to the proxy: {_os_error(exc)}"))
        except aiohttp.ClientConnectorError as exc:
            return _Outcome(
                None, True, scrub(f"cannot connect to {exc.host}:{exc.port}: {_os_error(exc)}")
            )
        except aiohttp.InvalidURL:
            return _Outcome(None, False, "url refused by the HTTP client")
        except aiohttp.ClientError as exc:
            return _Outcome(None, True, scrub(f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a request aiohttp refused to make: retrying cannot help
            log.error("%s: could not post: %s", target.type, scrub(f"{type(exc).__name__}: {exc}"))
            return _Outcome(None, False, scrub(f"{type(exc).__name__}: {exc}"))
        if payloads.success(target, status):
            return _Outcome(status, False)
        error = _phrase(status)
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        if retry_after is not None:
            error += f", retry after {_seconds(retry_after)}"
        try:
            text = head.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            text = head.decode("utf-8", errors="replace")
        if text.strip():
            error += f": {scrub(text)[:ERROR_BODY_CHARS]}"
        return _Outcome(status, retryable(status), error, retry_after)


def _os_error(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    return os_error.strerror or type(os_error).__name__

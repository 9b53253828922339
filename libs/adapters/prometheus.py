"""Prometheus through prometheus-api-client — the only module that imports it.

``Prometheus.query(promql)`` answers one float the way Flagger's Prometheus provider does
(pkg/metrics/providers/prometheus.go): GET ``<address>/api/v1/query`` with the whitespace of the
query collapsed, a 5 s timeout by default, the bearer token or basic auth and the template's
headers; the value is the *last* sample of the instant vector (Flagger loops over the result
and keeps the last one, so several series are neither summed nor refused — kept for
compatibility, with a warning in the log naming the query); an empty vector or a NaN value is
"no values found"; a range vector (matrix) is refused. Sluice goes further on one point: a
scalar result (``scalar(...)``, ``1``) is a single value and is accepted, where Flagger fails
to decode it.

* The blocking client runs off the event loop (``asyncio.to_thread``) and the whole call is
  bounded by the timeout (connect and read each, and the await as a whole).
* urllib3 retries are off (Flagger does not retry either; the analyzer's next step is the retry).
* Errors are translated here, with the original as ``__cause__``; no ``requests``, ``urllib3``
  or ``prometheus_api_client`` exception crosses this module::

      empty vector, NaN                       → errors.NoValuesFound ("no values found")
      HTTP 400 / 422 (bad or unexecutable)    → errors.InvalidInput (Prometheus's error text)
      a matrix or a string result             → errors.InvalidInput
      HTTP 401 / 403                          → errors.PermanentError (check the credentials)
      HTTP 404                                → errors.PermanentError (not a Prometheus API)
      HTTP 503 errorType "timeout"            → errors.Timeout
      HTTP 408 / 429 / 5xx / other            → errors.Unavailable
      connect or read timeout, the deadline   → errors.Timeout
      refused, DNS, TLS, reset, not JSON      → errors.Unavailable

* The token, the password and the basic-auth header value never appear in an error text, a
  log line or ``repr``: every error text is scrubbed of them before it is raised.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import requests
import requests.auth
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from libs import errors, logs
from libs.model import templates

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0  # Flagger's Prometheus provider timeout
ONLINE_QUERY = "vector(1)"  # Flagger's availability probe
NO_VALUES = "no values found"  # Flagger's ErrNoValuesFound text
NAN_VALUE = f"{NO_VALUES} (the query returned NaN)"
MAX_QUERY_CHARS = 200  # how much of a query an error text quotes
MAX_REDIRECTS = 10  # Go's http.Client follows at most 10
MAX_BODY_CHARS = 500  # how much of a non-JSON error body an error text quotes

_WHITESPACE = re.compile(r"\s+")
_REDACTED = "***"


class _HttpError(Exception):
    """An HTTP error answer, raised from the session's response hook (never escapes)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _raise_for_error(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
    """Response hook: an error answer stops here with its status and body, so the body (with
    Prometheus's error text) is read from the response rather than from an exception string."""
    if response.status_code >= 400:
        body = response.content
        response.close()
        raise _HttpError(response.status_code, body)


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` (an auth object, so ``~/.netrc`` is never consulted)."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class Prometheus:
    """One Prometheus HTTP API. Build it directly or from a MetricTemplate's provider with
    ``Prometheus.from_provider``; ``await close()`` when done."""

    def __init__(
        self,
        address: str,
        *,
        token: str = "",
        username: str = "",
        password: str = "",
        headers: Mapping[str, str | Sequence[str]] | None = None,
        insecure_skip_verify: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        parts = _parse_address(address)
        if not timeout_s > 0:
            raise errors.InvalidInput(
                f"prometheus timeout: expected a positive number of seconds, got {timeout_s!r}",
                path="timeout_s",
                expected="> 0",
            )
        self.timeout_s = float(timeout_s)
        # the address as it may be shown: no user info, no query
        self.address = urllib.parse.urlunsplit(
            (parts.scheme, _netloc(parts), parts.path.rstrip("/"), "", "")
        )
        self._secrets = _secrets(token, username, password, parts)
        auth: requests.auth.AuthBase | tuple[str, str] | None = None
        if token:
            auth = _BearerAuth(token)
        elif username and password:
            auth = (username, password)
        elif parts.username is not None and parts.password is not None:
            auth = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password))
        session = requests.Session()
        session.verify = not insecure_skip_verify
        session.hooks["response"] = [_raise_for_error]
        session.max_redirects = MAX_REDIRECTS
        if insecure_skip_verify:
            # asked for in the template: do not warn on every query (warnings filters are
            # process-wide; this one only silences urllib3's unverified-HTTPS warning)
            warnings.filterwarnings(
                "ignore",
                category=urllib3.exceptions.InsecureRequestWarning,
                module=r"urllib3\.connectionpool",
            )
        self._client = PrometheusConnect(
            url=self.address,
            headers=_flat_headers(headers or {}),
            # no retries: a refused connection or a timeout is reported at once; read=False
            # re-raises read timeouts as such instead of wrapping them in MaxRetryError
            retry=Retry(total=0, read=False, status=0, raise_on_status=False),
            auth=auth,
            session=session,
            timeout=None,  # given per call, as (connect, read)
        )

    @classmethod
    def from_provider(
        cls,
        provider: templates.MetricProvider,
        credentials: Mapping[str, bytes | str] | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Prometheus:
        """The client for a MetricTemplate's ``spec.provider``, with the data of its
        ``secretRef`` Secret (keys ``token``, or ``username`` and ``password``), as Flagger's
        ``NewPrometheusProvider`` reads them."""
        if not provider.address:
            raise errors.InvalidInput(
                f"{provider.type} address is not a valid URL",
                path="spec.provider.address",
                expected="an http or https URL",
            )
        token = username = password = ""
        if provider.secret_ref is not None:
            data = {k: _text(v) for k, v in (credentials or {}).items()}
            if "token" in data:
                token = data["token"]
            else:
                for key in ("username", "password"):
                    if key not in data:
                        raise errors.InvalidInput(
                            f"{provider.type} credentials does not contain a {key}",
                            path=f"secret {provider.secret_ref.name}",
                            expected=f"key {key!r} (or 'token')",
                        )
                username, password = data["username"], data["password"]
        return cls(
            provider.address,
            token=token,
            username=username,
            password=password,
            headers=provider.headers,
            insecure_skip_verify=provider.insecure_skip_verify,
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:
        return f"Prometheus({self.address!r}, timeout_s={self.timeout_s})"

    async def query(self, promql: str) -> float:
        """The instant value of ``promql`` now (see the module docstring for the rules)."""
        trimmed = _WHITESPACE.sub(" ", promql).strip()
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.to_thread(self._query, trimmed)
        except TimeoutError as exc:  # the await's own deadline (a trickling answer)
            raise errors.Timeout(
                f"prometheus {self.address}: no answer within {self.timeout_s:g}s"
            ) from exc

    async def ping(self) -> None:
        """Flagger's ``IsOnline``: ``vector(1)`` must answer 1; raises the typed error if not."""
        value = await self.query(ONLINE_QUERY)
        if value != 1:
            raise errors.Unavailable(
                f"prometheus {self.address}: value is not 1 for query: {ONLINE_QUERY}"
            )

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)

    # --- blocking part (runs in a worker thread) ---

    def _query(self, promql: str) -> float:
        log.debug("prometheus %s query %s", self.address, logs.clip(promql, MAX_QUERY_CHARS))
        try:
            result = self._client.custom_query(promql, timeout=(self.timeout_s, self.timeout_s))
        except Exception as exc:
            translated = self._translate(promql, exc)
            if translated is None:
                raise
            raise translated from exc
        if isinstance(result, list) and len(result) > 1 and isinstance(result[0], dict):
            log.warning(
                "prometheus %s: query returned %d series; the last one is the value, as in "
                "Flagger (aggregate them, e.g. with sum(...)): %s",
                self.address,
                len(result),
                logs.clip(promql, MAX_QUERY_CHARS),
            )
        try:
            return _value(result)
        except errors.NoValuesFound:
            raise  # Flagger's bare "no values found" (the analyzer's messages quote it)
        except errors.SluiceError as exc:
            raise self._scrubbed(exc, prefix=f"prometheus {self.address}: ") from exc.__cause__

    def _translate(self, promql: str, exc: BaseException) -> errors.SluiceError | None:
        where = f"prometheus {self.address}"
        error: errors.SluiceError | None
        if isinstance(exc, _HttpError):
            error = _http_error(where, promql, exc.status, exc.body)
        elif _is_timeout(exc):
            error = errors.Timeout(f"{where}: no answer within {self.timeout_s:g}s")
        elif isinstance(exc, requests.exceptions.SSLError):
            error = errors.Unavailable(
                f"{where}: TLS failed: {_reason(exc)} "
                "(a self-signed certificate needs insecureSkipVerify: true)"
            )
        elif isinstance(exc, requests.exceptions.ConnectionError):
            error = errors.Unavailable(f"{where}: cannot connect: {_reason(exc)}")
        elif isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.URLRequired):
            error = errors.InvalidInput(f"{where}: {_reason(exc)}", path="address")
        elif isinstance(exc, ValueError | KeyError | TypeError | PrometheusApiClientException):
            # a 2xx that is not Prometheus's JSON (JSONDecodeError is a ValueError), or a 2xx
            # other than 200 (the client's own exception)
            error = errors.Unavailable(
                f"{where}: not a Prometheus API answer ({type(exc).__name__}: "
                f"{logs.clip(str(exc), MAX_BODY_CHARS)})"
            )
        elif isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError | OSError):
            error = errors.Unavailable(f"{where}: {type(exc).__name__}: {_reason(exc)}")
        else:
            return None
        return self._scrubbed(error)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _scrubbed(self, error: errors.SluiceError, prefix: str = "") -> errors.SluiceError:
        """``error`` without any secret in its texts (the same object when it had none and
        no ``prefix`` is to be added)."""
        message = prefix + self._scrub(error.message)
        if isinstance(error, errors.InvalidInput):
            expected = self._scrub(error.expected)
            if (message, expected) == (error.message, error.expected):
                return error
            return type(error)(message, path=error.path, expected=expected)
        return error if message == error.message else type(error)(message)


# ----------------------------------------------------------------------------- helpers


def _parse_address(address: str) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except (ValueError, TypeError, AttributeError) as exc:
        raise _bad_address(address) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad_address(address)
    return parts


def _bad_address(address: object) -> errors.InvalidInput:
    shown = logs.redact_url(address) if isinstance(address, str) else repr(address)
    return errors.InvalidInput(
        f"prometheus address {shown} is not a valid URL",
        path="address",
        expected="an http or https URL",
    )


def _netloc(parts: urllib.parse.SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _secrets(
    token: str, username: str, password: str, parts: urllib.parse.SplitResult
) -> tuple[str, ...]:
    """Every string that must never be shown, longest first (so a secret that contains
    another is redacted whole): the token, passwords, and basic-auth header values."""
    found = {token}
    pairs = [(username, password)]
    if parts.password is not None:
        found.add(parts.password)
        pairs.append(
            (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password))
        )
    for user, secret in pairs:
        if secret:
            found.add(secret)
            found.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def _flat_headers(headers: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    """Go's ``http.Header`` (a list of values per name) as one header line per name."""
    flat: dict[str, str] = {}
    for name, value in headers.items():
        flat[name] = value if isinstance(value, str) else ", ".join(value)
    return flat


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _value(result: Any) -> float:
    """The one value of ``data.result``: a vector's last sample, or a scalar."""
    if isinstance(result, list) and all(isinstance(item, dict) for item in result):
        value: float | None = None
        for item in result:
            if "values" in item:
                raise errors.InvalidInput(
                    "query returned multiple values (a range vector); expected an instant value",
                    path="query",
                    expected="an instant vector or a scalar",
                )
        for item in result:
            sample = item.get("value")
            if isinstance(sample, list) and len(sample) == 2 and isinstance(sample[1], str):
                value = _number(sample[1])  # the last one wins, as in Flagger
        if value is None:
            raise errors.NoValuesFound(NO_VALUES)
        if math.isnan(value):
            raise errors.NoValuesFound(NAN_VALUE)
        return value
    if isinstance(result, list) and len(result) == 2 and isinstance(result[1], str):
        # scalar (or string) result: [<time>, "<value>"]
        try:
            value = float(result[1])
        except ValueError:
            raise errors.InvalidInput(
                f"query returned a string ({logs.clip(result[1], 80)!r}); expected a number",
                path="query",
                expected="an instant vector or a scalar",
            ) from None
        if math.isnan(value):
            raise errors.NoValuesFound(NAN_VALUE)
        return value
    raise errors.Unavailable(
        f"not a Prometheus query result: {logs.clip(repr(result), MAX_BODY_CHARS)}"
    )


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise errors.Unavailable(f"sample value {logs.clip(text, 80)!r} is not a number") from None


def _http_error(where: str, promql: str, status: int, body: bytes) -> errors.SluiceError:
    error_type, text = _error_text(body)
    shown = f"HTTP {status}" + (f" {error_type}" if error_type else "")
    if status in (400, 422):
        return errors.InvalidInput(
            f"{where} rejected the query {logs.clip(promql, MAX_QUERY_CHARS)!r}: {shown}: {text}",
            path="query",
            expected=text,
        )
    if status in (401, 403):
        return errors.PermanentError(f"{where}: {shown}: {text} (check the credentials)")
    if status == 404:
        return errors.PermanentError(f"{where}: {shown}: {text} (is the address a Prometheus API?)")
    if error_type == "timeout":
        return errors.Timeout(f"{where}: {shown}: {text}")
    return errors.Unavailable(f"{where}: {shown}: {text}")


def _error_text(body: bytes) -> tuple[str, str]:
    """``(errorType, error)`` of Prometheus's error JSON, or ``("", <the body, clipped>)``."""
    text = body.decode(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data.get("errorType") or ""), data["error"]
    return "", logs.clip(text.strip(), MAX_BODY_CHARS) or "(empty body)"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the urllib3 errors it wraps and their causes, innermost last."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            inner.append(reason)
        for nxt in (*inner, current.__cause__, current.__context__):
            if nxt is not None:
                todo.append(nxt)


def _is_timeout(exc: BaseException) -> bool:
    for item in _chain(exc):
        if isinstance(item, urllib3.exceptions.NewConnectionError):
            continue  # a ConnectTimeoutError subclass, but a refusal
        if isinstance(
            item,
            requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError,
        ):
            return True
    return False


def _reason(exc: BaseException) -> str:
    """The most telling text of a connection problem: the innermost OS error if there is
    one (``[Errno 111] Connection refused``), else the outermost text."""
    innermost: BaseException | None = None
    for item in _chain(exc):
        if isinstance(item, OSError) and not isinstance(
            item, requests.RequestException | urllib3.exceptions.HTTPError
        ):
            innermost = item
    text = str(innermost if innermost is not None else exc)
    return logs.clip(text or type(exc).__name__, MAX_BODY_CHARS)

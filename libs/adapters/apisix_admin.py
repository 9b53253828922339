"""APISIX's Admin API (v3) over aiohttp — the standalone mode's only way into the gateway.

``AdminApi`` reads and writes routes and upstreams at ``<url>/apisix/admin/<kind>[/<id>]``
with the ``X-API-KEY`` header::

    get(kind, id)                    GET     one resource            → Resource
    list(kind)                       GET     every resource          → list[Resource]
    put(kind, id, body)              PUT     create or replace       → Resource
    patch(kind, id, body, path="")   PATCH   merge (``null`` deletes a field, arrays are
                                             replaced whole); with ``path`` (``plugins/x``)
                                             the value at that sub-path is replaced whole
    delete(kind, id)                 DELETE

A ``Resource`` carries the ``key`` (``/apisix/routes/1``), the ``value`` as stored, and the
etcd ``created_index`` / ``modified_index`` when the answer has them (APISIX returns them on
reads, not on writes). APISIX has no conditional write: read ``modified_index`` before and
after a write to notice a concurrent writer.

Every call is bounded by ``timeout_s`` (the whole request); answers are translated here, and no
aiohttp exception crosses this module::

    404                                  → errors.NotFound (names the resource)
    400 (schema, bad body)               → errors.InvalidInput (APISIX's error_msg)
    401 / 403                            → errors.PermanentError (the key was refused; names
                                           the setting SLUICE_APISIX_ADMIN_KEY_FILE)
    5xx, refused, reset, DNS             → retried ``retries`` times with a short backoff,
                                           then errors.Unavailable (names the URL)
    the timeout                          → errors.Timeout
    other 4xx, an answer that is not JSON → errors.Unavailable / errors.InvalidInput

The key never appears in an error text, a log line or ``repr``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import pathlib
from typing import Any, Literal

import aiohttp
import msgspec

from libs import errors, logs

log = logging.getLogger(__name__)

Kind = Literal["routes", "upstreams"]
KINDS: tuple[str, ...] = ("routes", "upstreams")
PREFIX = "/apisix/admin"
KEY_HEADER = "X-API-KEY"
KEY_SETTING = "SLUICE_APISIX_ADMIN_KEY_FILE"
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 2
BACKOFF_S = 0.2  # first retry delay; doubles per retry
MAX_BODY_CHARS = 300  # how much of an error body an error text quotes

Obj = dict[str, Any]


class AdminConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the Admin API is and how to call it (``url``: ``http://apisix:9180``)."""

    url: str
    api_key: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES

    def __repr__(self) -> str:  # the key is never shown
        return (
            f"AdminConfig(url={self.url!r}, api_key='***', timeout_s={self.timeout_s}, "
            f"retries={self.retries})"
        )


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """One stored resource as the Admin API answers it."""

    key: str
    value: Obj
    created_index: int | None = None
    modified_index: int | None = None


def read_key(path: str | pathlib.Path) -> str:
    """The Admin API key from a file (surrounding whitespace stripped)."""
    file = pathlib.Path(path)
    try:
        key = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise errors.InvalidInput(
            f"{KEY_SETTING}: cannot read the APISIX Admin API key from {file}: "
            f"{exc.strerror or exc}",
            path=KEY_SETTING,
            expected="a readable file holding the key",
        ) from exc
    except UnicodeDecodeError as exc:
        raise errors.InvalidInput(
            f"{KEY_SETTING}: {file} is not UTF-8 text",
            path=KEY_SETTING,
            expected="a text file holding the key",
        ) from exc
    if not key:
        raise errors.InvalidInput(
            f"{KEY_SETTING}: {file} is empty",
            path=KEY_SETTING,
            expected="a file holding the APISIX Admin API key",
        )
    return key


def from_settings(url: str, key_file: str, timeout_s: float) -> AdminApi:
    """A client as the services configure it (``SLUICE_APISIX_ADMIN_URL``,
    ``SLUICE_APISIX_ADMIN_KEY_FILE``, ``SLUICE_APISIX_ADMIN_TIMEOUT_S``); without a key file
    the requests carry no key, and an Admin API that wants one refuses them, saying so."""
    key = read_key(key_file) if key_file else ""
    return AdminApi(AdminConfig(url=url, api_key=key, timeout_s=timeout_s))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise errors.InvalidInput(
            f"kind: expected routes or upstreams, got {kind!r}",
            path="kind",
            expected="|".join(KINDS),
        )


def _check_id(resource_id: str) -> None:
    if not resource_id or "/" in resource_id or resource_id in {".", ".."}:
        raise errors.InvalidInput(
            f"id: expected an APISIX id, got {resource_id!r}",
            path="id",
            expected="1-64 of letters, digits, -, _ and .",
        )


def _resource(raw: Any, where: str) -> Resource:
    if not isinstance(raw, dict) or not isinstance(raw.get("value"), dict):
        raise errors.Unavailable(f"{where}: the Admin API answered without a resource value")
    created, modified = raw.get("createdIndex"), raw.get("modifiedIndex")
    return Resource(
        key=str(raw.get("key", "")),
        value=raw["value"],
        created_index=created if isinstance(created, int) else None,
        modified_index=modified if isinstance(modified, int) else None,
    )


class _Retry(Exception):
    """A failure worth another attempt (5xx, connection); carries the final error."""

    def __init__(self, error: errors.SluiceError) -> None:
        super().__init__(str(error))
        self.error = error


class AdminApi:
    """A client of one APISIX Admin API; ``await close()`` when done."""

    def __init__(self, config: AdminConfig) -> None:
        if not config.timeout_s > 0:
            raise errors.InvalidInput(
                f"timeout_s: expected a positive number of seconds, got {config.timeout_s!r}",
                path="timeout_s",
                expected="> 0",
            )
        if config.retries < 0:
            raise errors.InvalidInput(
                f"retries: expected 0 or more, got {config.retries!r}", path="retries"
            )
        if not config.url.startswith(("http://", "https://")):
            raise errors.InvalidInput(
                f"url: expected http(s)://host:port, got {logs.redact_url(config.url)!r}",
                path="url",
                expected="http(s)://host:port",
            )
        self.config = config
        self.base = config.url.rstrip("/") + PREFIX
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"AdminApi({logs.redact_url(self.config.url)!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={KEY_HEADER: self.config.api_key},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ operations

    async def get(self, kind: Kind, resource_id: str) -> Resource:
        _check_kind(kind)
        _check_id(resource_id)
        where = f"{kind}/{resource_id}"
        return _resource(await self._call("GET", where, None), where)

    async def list(self, kind: Kind) -> builtins.list[Resource]:
        _check_kind(kind)
        raw = await self._call("GET", kind, None)
        items = raw.get("list") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            # APISIX answers an empty list as {"list": {}} in some versions
            if isinstance(items, dict) and not items:
                return []
            raise errors.Unavailable(f"{kind}: the Admin API answered without a list")
        return [_resource(item, kind) for item in items]

    async def put(self, kind: Kind, resource_id: str, body: Obj) -> Resource:
        _check_kind(kind)
        _check_id(resource_id)
        where = f"{kind}/{resource_id}"
        return _resource(await self._call("PUT", where, body), where)

    async def patch(self, kind: Kind, resource_id: str, body: Any, path: str = "") -> Resource:
        """Merge ``body`` into the resource, or replace the value at sub-path ``path``."""
        _check_kind(kind)
        _check_id(resource_id)
        path = path.strip("/")
        if path and any(part in {"", ".", ".."} for part in path.split("/")):
            raise errors.InvalidInput(
                f"path: expected a sub-path like plugins/traffic-split, got {path!r}",
                path="path",
            )
        where = f"{kind}/{resource_id}" + (f"/{path}" if path else "")
        return _resource(await self._call("PATCH", where, body), f"{kind}/{resource_id}")

    async def delete(self, kind: Kind, resource_id: str) -> None:
        _check_kind(kind)
        _check_id(resource_id)
        await self._call("DELETE", f"{kind}/{resource_id}", None)

    # ------------------------------------------------------------------ transport

    async def _call(self, method: str, where: str, body: Any) -> Any:
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(method, where, body)
            except _Retry as retry:
                if attempt == attempts:
                    raise retry.error from retry.__cause__
                delay = BACKOFF_S * 2 ** (attempt - 1)
                log.info(
                    "APISIX Admin API %s %s failed (%s); retry %d/%d in %.1fs",
                    method,
                    where,
                    retry.error,
                    attempt,
                    self.config.retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _once(self, method: str, where: str, body: Any) -> Any:
        url = f"{self.base}/{where}"
        shown = f"{method} {logs.redact_url(url)}"
        data = None if body is None else msgspec.json.encode(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._client().request(method, url, data=data, headers=headers) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
        except TimeoutError as exc:
            raise errors.Timeout(
                f"{shown}: the APISIX Admin API did not answer within {self.config.timeout_s}s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            error = errors.Unavailable(
                f"{shown}: the APISIX Admin API is unreachable ({type(exc).__name__}: "
                f"{self._scrub(str(exc))})"
            )
            raise _Retry(error) from exc
        return self._answer(status, text, shown, where)

    def _scrub(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    def _answer(self, status: int, text: str, shown: str, where: str) -> Any:
        try:
            payload: Any = msgspec.json.decode(text) if text else {}
        except msgspec.DecodeError:
            payload = None
        if 200 <= status < 300:
            if payload is None:
                raise errors.Unavailable(
                    f"{shown}: the APISIX Admin API answered {status} with a body that is not JSON"
                )
            return payload
        detail = ""
        if isinstance(payload, dict):
            detail = str(payload.get("error_msg") or payload.get("message") or "")
        if not detail:
            detail = text[:MAX_BODY_CHARS]
        detail = logs.clip(self._scrub(detail), MAX_BODY_CHARS)
        if status in (401, 403):
            raise errors.PermanentError(
                f"{shown}: the APISIX Admin API refused the key (HTTP {status}); check "
                f"{KEY_SETTING} (the file holding deployment.admin.admin_key)"
            )
        if status == 404:
            kind, _, rest = where.partition("/")
            raise errors.NotFound(f"APISIX {kind[:-1]} {rest.split('/')[0]!r} not found")
        if status == 400:
            raise errors.InvalidInput(f"{shown}: APISIX refused the request: {detail}", path=where)
        if status >= 500 or status in (408, 429):
            raise _Retry(
                errors.Unavailable(f"{shown}: the APISIX Admin API answered {status}: {detail}")
            )
        raise errors.Unavailable(f"{shown}: the APISIX Admin API answered {status}: {detail}")

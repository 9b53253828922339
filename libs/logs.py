"""Logging set-up: standard ``logging``, text for people or JSON for pipelines.

Context (service, canary, subject, message id, correlation id) travels in ``extra`` and is
printed on every line that has it. Secrets never reach a log line: URLs are shortened with
``redact_url`` before logging.

Input never amplifies into logs: both formatters ``clip`` the message to ``MAX_MESSAGE_CHARS``,
each context value to ``MAX_CONTEXT_CHARS`` and a traceback to ``MAX_TRACEBACK_CHARS``, so a
megabyte-long value in a message costs a log line of a few kilobytes at most.
"""

from __future__ import annotations

import logging
import sys
import time
import urllib.parse
from collections.abc import Mapping, MutableMapping
from typing import Any

import msgspec

CONTEXT_FIELDS = ("service", "canary", "subject", "msg_id", "correlation_id")

MAX_MESSAGE_CHARS = 2000
MAX_CONTEXT_CHARS = 200
MAX_TRACEBACK_CHARS = 8000
MAX_VALUE_CHARS = 300  # a value quoted inside an error text (see ``clip``)


def clip(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` if it is short, else its head and tail around a marker naming what was cut.

    The tail is kept because error texts end with the useful part (msgspec's
    ``... - at `$.spec.analysis` ``)."""
    if len(text) <= limit:
        return text
    marker = f" …[{len(text) - limit} characters cut]… "
    keep = max(limit - len(marker), 2)
    head = keep * 2 // 3
    return text[:head] + marker + text[len(text) - (keep - head) :]


def _context_value(record: logging.LogRecord, name: str) -> str:
    return clip(str(getattr(record, name)), MAX_CONTEXT_CHARS)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "service", None):
            record.service = self.service
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        context = " ".join(
            f"{name}={_context_value(record, name)}"
            for name in CONTEXT_FIELDS[1:]
            if getattr(record, name, None)
        )
        message = clip(record.getMessage(), MAX_MESSAGE_CHARS)
        line = f"{stamp} {record.levelname:<7} {getattr(record, 'service', '-')}: {message}"
        if context:
            line += f"  [{context}]"
        if record.exc_info:
            line += "\n" + clip(self.formatException(record.exc_info), MAX_TRACEBACK_CHARS)
        return line


class JsonFormatter(logging.Formatter):
    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": clip(record.getMessage(), MAX_MESSAGE_CHARS),
        }
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None):
                data[name] = _context_value(record, name)
        if record.exc_info:
            data["exc"] = clip(self.formatException(record.exc_info), MAX_TRACEBACK_CHARS)
        return self._encoder.encode(data).decode()


def setup(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for a service process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # nats-py and aiohttp are chatty at INFO about things the service already reports
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class ContextAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds fixed context (e.g. subject, canary) to every line."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra: Mapping[str, object] = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return msg, kwargs


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/SECRET`` → ``https://hooks.slack.com/…``."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""  # .port raises for a bad port
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme or not parts.hostname:
        return "<redacted>"
    suffix = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{port}{suffix}"

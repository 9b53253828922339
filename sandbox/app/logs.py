"""A container's recent log lines, kept in memory for ``kubectl logs``.

The podinfo-like app writes a line when it starts listening and one per request (probes and
``/metrics`` scrapes left out, as they would drown the rest). The simulated kubelet hands the
buffer to the API server, whose ``pods/log`` subresource prints the newest lines
(``--tail``, ``--since``, ``--timestamps``) and follows new ones (``-f``) until the container
stops.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import time
from collections.abc import AsyncIterator
from typing import Any

DEFAULT_LIMIT = 1000  # lines kept per container; older ones are dropped

Line = tuple[float, str]  # (unix time, text without the newline)


def timestamp(moment: float) -> str:
    """RFC 3339 with nanoseconds, as the kubelet prefixes lines with ``timestamps=true``."""
    value = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}000Z"


class LogBuffer:
    """The newest ``limit`` lines, oldest first, and a way to wait for the next ones."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit: expected a positive number of lines, got {limit}")
        self._lines: collections.deque[Line] = collections.deque(maxlen=limit)
        self.total = 0  # lines ever written, so followers know what they missed
        self.closed = False
        self.followers = 0  # streams waiting in follow()
        self._changed = asyncio.Event()

    def write(self, message: str, **fields: Any) -> None:
        """Append one JSON line in the style of podinfo's logger (level, ts, msg, fields)."""
        now = time.time()
        record = {"level": "info", "ts": timestamp(now)[:-7] + "Z", "msg": message, **fields}
        self._append(now, json.dumps(record, separators=(",", ":")))

    def _append(self, moment: float, text: str) -> None:
        self._lines.append((moment, text))
        self.total += 1
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """The container stopped: followers get what is left and then the end."""
        self.closed = True
        self._wake()

    def lines(self, *, tail: int | None = None, since: float | None = None) -> list[Line]:
        """The kept lines, optionally only those at or after ``since`` and the last ``tail``."""
        out = [line for line in self._lines if since is None or line[0] >= since]
        if tail is not None:
            out = out[-tail:] if tail > 0 else []
        return out

    async def follow(self, stop: asyncio.Event) -> AsyncIterator[Line]:
        """Lines written from now on, until the buffer is closed or ``stop`` is set."""
        seen = self.total
        self.followers += 1
        try:
            async for line in self._follow(seen, stop):
                yield line
        finally:
            self.followers -= 1

    async def _follow(self, seen: int, stop: asyncio.Event) -> AsyncIterator[Line]:
        while not stop.is_set():
            if self.total == seen:
                if self.closed:
                    return
                changed = asyncio.ensure_future(self._changed.wait())
                stopped = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({changed, stopped}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                    stopped.cancel()
                continue
            new = min(self.total - seen, len(self._lines))
            seen = self.total
            for line in list(self._lines)[len(self._lines) - new :]:
                yield line

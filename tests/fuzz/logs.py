"""Logs: what one service's log shows after the run.

``analyse_log`` reads the log once and fills a ``model.ServiceReport``: its size, its longest
line, lines carrying ``values.SECRET``, counts of notable patterns and levels, the first few
distinct error lines, the lines that mention the sampled correlation ids, and its tail.
"""

from __future__ import annotations

import collections
import pathlib
import re
from collections.abc import Iterable

from tests.fuzz import model, values

_PATTERNS: tuple[str, ...] = (
    "Traceback",
    "Task exception was never retrieved",
    "RecursionError",
    "handler crashed",
    "rejected message",
    "command failed",
    "did not finish within",
    "disconnected from NATS",
    "a root task ended unexpectedly",
)
_LEVEL = re.compile(rb"^\d\d:\d\d:\d\d (WARNING|ERROR|CRITICAL) ")
# error-level lines, tracebacks and their last line ("RecursionError: ...")
_NOTABLE = re.compile(
    rb"^\d\d:\d\d:\d\d (ERROR|CRITICAL) |Traceback|never retrieved|^[A-Za-z_][\w.]*(Error|Exception)\b"
)


def _trim(line: bytes | str, width: int = 300) -> str:
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    text = text.rstrip("\n")
    return text if len(text) <= width else f"{text[:width]}… ({len(text)} chars)"


def analyse_log(
    path: pathlib.Path, report: model.ServiceReport, needles: Iterable[str] = ()
) -> None:
    """Size, longest line, secret leaks, notable lines and the tail of one service's log."""
    wanted = {needle.encode(): needle for needle in needles}
    tail: collections.deque[str] = collections.deque(maxlen=8)
    seen_notable: set[bytes] = set()
    counts: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return
    report.log_bytes = path.stat().st_size
    with path.open("rb") as log:
        for number, line in enumerate(log, 1):
            body = line.rstrip(b"\n")
            if len(body) > report.max_line:
                report.max_line = len(body.decode(errors="replace"))
                report.max_line_head = f"line {number}: {_trim(body, 240)}"
            if values.SECRET.encode() in body:
                report.secret_lines += 1
                if len(report.secret_excerpts) < 3:
                    index = body.find(values.SECRET.encode())
                    excerpt = body[max(0, index - 200) : index + 60]
                    report.secret_excerpts.append(f"line {number}: …{_trim(excerpt)}…")
            for pattern in _PATTERNS:
                if pattern.encode() in body:
                    counts[pattern] += 1
            level = _LEVEL.match(body)
            if level:
                counts[level.group(1).decode()] += 1
            if _NOTABLE.search(body[:400]) and len(report.notable) < 12:
                signature = re.sub(rb"^\d\d:\d\d:\d\d ", b"", body)[:90]
                if signature not in seen_notable:
                    seen_notable.add(signature)
                    report.notable.append(f"line {number}: {_trim(body, 240)}")
            for needle, name in wanted.items():
                if name not in report.correlated and needle in body:
                    report.correlated[name] = f"line {number}: {_trim(body, 240)}"
            tail.append(_trim(body, 240))
    report.patterns = dict(counts)
    report.tail = list(tail)

"""Go-style durations, as Flagger parses them with ``time.ParseDuration``.

Flagger's CRD constrains interval fields with the pattern ``^[0-9]+(m|s)`` (a prefix match:
``1m30s`` and ``500ms`` pass it too), then parses the value as a Go duration. A value is a valid
*interval* when it passes both.
"""

from __future__ import annotations

import re

#: Flagger's CRD pattern for ``analysis.interval``, ``metrics[].interval`` and ``webhooks[].timeout``.
INTERVAL_PATTERN = r"^[0-9]+(m|s)"

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER_UNIT = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h)"
_WHOLE = re.compile(rf"[-+]?(?:{_NUMBER_UNIT})+")
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_INTERVAL = re.compile(INTERVAL_PATTERN)


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as ``10s``, ``1m30s``, ``1.5h`` or ``300ms``.

    Raises ``ValueError`` for anything ``time.ParseDuration`` would refuse. ``"0"`` is zero.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string, got {type(text).__name__}")
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}")
    sign = -1.0 if text.startswith("-") else 1.0
    total = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    return sign * total


def is_duration(text: object) -> bool:
    """Whether ``text`` is a Go duration string."""
    if not isinstance(text, str):
        return False
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


def is_interval(text: object) -> bool:
    """Whether ``text`` passes Flagger's interval pattern and parses as a non-negative duration."""
    return isinstance(text, str) and bool(_INTERVAL.match(text)) and is_duration(text)


def interval_seconds(text: str | None, *, default: float, minimum: float = 0.0) -> float:
    """Seconds in an interval field, ``default`` when empty or unparsable, at least ``minimum``.

    This is Flagger's ``GetAnalysisInterval`` when called with ``default=60, minimum=10``.
    """
    if not text:
        return default
    try:
        seconds = parse_duration(text)
    except ValueError:
        return default
    return max(seconds, minimum)

"""Go's ``flag`` value syntax, as hey's flags are read: integers as ``strconv.ParseInt`` with base
0 (``0x1f``, ``017`` octal, ``0b101``, ``1_000``), floats as ``strconv.ParseFloat`` (hex floats,
``inf``, ``nan``), durations as ``time.ParseDuration`` (``10s``, ``1h30m``, ``1.5h``, ``300ms``),
and values quoted back as Go's ``%q`` would (clipped, so input never amplifies).

A value that does not parse raises ``ValueProblem`` with Go's own words ("parse error",
"value out of range"); ``parsing`` turns it into hey's usage error naming the flag.
"""

from __future__ import annotations

import json
import math
import re

from libs import logs

MAX_INT64 = 2**63 - 1


class ValueProblem(Exception):
    """Go's flag error texts: "parse error" or "value out of range"."""


_INT_DIGITS = {"0b": (2, "01"), "0o": (8, "01234567"), "0x": (16, "0123456789abcdef")}


def _digits_ok(digits: str, alphabet: str, *, after_prefix: bool) -> bool:
    """Digits of ``alphabet`` with single underscores between them (or right after a base
    prefix), as Go's ``strconv`` allows with base 0."""
    if not digits:
        return False
    if digits.startswith("_") and not after_prefix:
        return False
    if digits.endswith("_") or "__" in digits:
        return False
    return all(c in alphabet for c in digits.replace("_", "")) and digits.strip("_") != ""


def parse_int(text: str) -> int:
    """Go's ``strconv.ParseInt(text, 0, 64)``."""
    body = text[1:] if text[:1] in "+-" else text
    negative = text.startswith("-")
    lowered = body.lower()
    prefix = lowered[:2]
    if prefix in _INT_DIGITS and len(lowered) > 2:
        base, alphabet = _INT_DIGITS[prefix]
        digits = lowered[2:]
        ok = _digits_ok(digits, alphabet, after_prefix=True)
    elif len(lowered) > 1 and lowered[0] == "0":  # 017 is octal, as in Go
        base, digits = 8, lowered[1:]
        ok = _digits_ok(digits, "01234567", after_prefix=True)
    else:
        base, digits = 10, lowered
        ok = _digits_ok(digits, "0123456789", after_prefix=False)
    if not ok:
        raise ValueProblem("parse error")
    value = int(digits.replace("_", ""), base)
    value = -value if negative else value
    if not -MAX_INT64 - 1 <= value <= MAX_INT64:
        raise ValueProblem("value out of range")
    return value


_DEC = r"[0-9](?:_?[0-9])*"
_FLOAT_DECIMAL = re.compile(rf"[+-]?(?:{_DEC}(?:\.(?:{_DEC})?)?|\.{_DEC})(?:[eE][+-]?{_DEC})?")
_HEX = r"[0-9a-fA-F](?:_?[0-9a-fA-F])*"
_FLOAT_HEX = re.compile(rf"[+-]?0[xX](?:_?{_HEX}(?:\.(?:{_HEX})?)?|\.{_HEX})[pP][+-]?{_DEC}")
_FLOAT_SPECIAL = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def parse_float(text: str) -> float:
    """Go's ``strconv.ParseFloat(text, 64)``: decimal, hexadecimal (``0x1p-2``), Inf, NaN."""
    if _FLOAT_SPECIAL.fullmatch(text):
        return float(text)
    if _FLOAT_DECIMAL.fullmatch(text):
        value = float(text.replace("_", ""))
    elif _FLOAT_HEX.fullmatch(text):
        value = float.fromhex(text.replace("_", ""))
    else:
        raise ValueProblem("parse error")
    if math.isinf(value):
        raise ValueProblem("value out of range")
    return value


_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` (``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+``), in seconds."""
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueProblem("parse error")
    total_ns = 0
    while rest:
        match = _DURATION_PART.match(rest)
        assert match is not None  # the pattern matches the empty string
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not fraction:  # no digits at all: ".s", "s", "."
            raise ValueProblem("parse error")
        if unit not in _UNIT_NS:  # missing or unknown unit
            raise ValueProblem("parse error")
        scale = _UNIT_NS[unit]
        total_ns += int(whole or "0") * scale
        if fraction:
            total_ns += int(fraction) * scale // 10 ** len(fraction)
        if total_ns > MAX_INT64 + (1 if negative else 0):
            raise ValueProblem("parse error")
        rest = rest[match.end() :]
    return (-total_ns if negative else total_ns) / 1e9


def quote(value: str) -> str:
    """A value quoted like Go's ``%q`` (closely enough), clipped so input never amplifies."""
    return json.dumps(logs.clip(value, 100), ensure_ascii=False)

"""Walk a raw object (dicts, lists, scalars) against a model and collect *every* problem.

msgspec stops at the first error; this walk reports each unknown field (with a close-match
suggestion), wrong type, missing required field, enum and pattern violation, and returns a
*cleaned* copy without the offending values so the rest of the object can still be decoded
and checked by the semantic rules.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect as mi

from libs.model import durations


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem at a field path (``spec.analysis.metrics[0].interval``)."""

    path: str
    message: str


class _Drop:
    """Marks a value removed from the cleaned copy."""


DROP = _Drop()
_IDENT = re.compile(r"^[A-Za-z0-9_/-][A-Za-z0-9_/.-]*$")


def join(path: str, key: str) -> str:
    """``path.key``; keys that would be ambiguous are written ``path["key"]``."""
    if _IDENT.match(key) and "." not in key:
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def index(path: str, i: int) -> str:
    """``path[i]``."""
    return f"{path}[{i}]"


def show(value: Any, limit: int = 80) -> str:
    """The json-ish repr of a found value, shortened."""
    try:
        text = json.dumps(_plain(value), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    """Integral floats as ints (``99`` rather than ``99.0``), recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def suggest(key: str, known: list[str]) -> str:
    """`` (did you mean "threshold"?)`` when a known name is close to ``key``."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        lowered = {name.lower(): name for name in known}
        if key.lower() in lowered:
            close = [lowered[key.lower()]]
    return f' (did you mean "{close[0]}"?)' if close else ""


@functools.cache
def type_info(model: type) -> mi.Type:
    """msgspec's description of a model type (cached)."""
    return mi.type_info(model)


def check(value: Any, model: type) -> tuple[list[Issue], Any]:
    """Every structural problem of ``value`` against ``model`` and the cleaned value."""
    issues: list[Issue] = []
    cleaned = _walk(value, type_info(model), "", issues, {})
    return issues, (None if cleaned is DROP else cleaned)


# --- the walk --------------------------------------------------------------------------------


def _walk(value: Any, t: mi.Type, path: str, out: list[Issue], extra: dict[str, Any]) -> Any:
    if isinstance(t, mi.Metadata):
        merged = {**extra, **(t.extra or {})}
        return _walk(value, t.type, path, out, merged)
    if isinstance(t, mi.AnyType):
        return value
    if isinstance(t, mi.UnionType):
        return _walk_union(value, t, path, out, extra)
    if isinstance(t, mi.StructType):
        return _walk_struct(value, t, path, out, extra)
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return _walk_list(value, t.item_type, path, out, extra)
    if isinstance(t, mi.DictType):
        return _walk_dict(value, t, path, out, extra)
    problem = _scalar_problem(value, t, extra)
    if problem is not None:
        out.append(Issue(path, problem))
        return DROP
    return value


def _expected(t: mi.Type, extra: dict[str, Any]) -> str:
    if "expected" in extra:
        return str(extra["expected"])
    return _describe(t)


def _describe(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        return str((t.extra or {}).get("expected") or _describe(t.type))
    if isinstance(t, mi.BoolType):
        return "a boolean"
    if isinstance(t, mi.IntType):
        if t.ge is not None and t.le is not None:
            return f"an integer from {t.ge} to {t.le}"
        if t.ge is not None:
            return f"an integer >= {t.ge}"
        return "an integer"
    if isinstance(t, mi.FloatType):
        return "a number"
    if isinstance(t, mi.StrType):
        if t.pattern:
            return f"a string matching {t.pattern}"
        if t.min_length:
            return "a non-empty string"
        return "a string"
    if isinstance(t, mi.LiteralType | mi.EnumType):
        return "one of " + ", ".join(json.dumps(v) for v in _choices(t))
    if isinstance(t, mi.StructType | mi.DictType):
        return "an object"
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return "a list"
    if isinstance(t, mi.UnionType):
        parts = [_describe(m) for m in t.types if not isinstance(m, mi.NoneType)]
        return " or ".join(parts)
    return "a value"


def _choices(t: mi.LiteralType | mi.EnumType) -> list[Any]:
    if isinstance(t, mi.LiteralType):
        return list(t.values)
    members: list[enum.Enum] = list(t.cls)
    return [m.value for m in members]


def _scalar_problem(value: Any, t: mi.Type, extra: dict[str, Any]) -> str | None:
    """The message for a scalar that does not fit ``t`` (with ``extra``), else None."""
    expected = _expected(t, extra)
    got = f"expected {expected}, got {show(value)}"
    if isinstance(t, mi.NoneType):
        return None if value is None else got
    if isinstance(t, mi.BoolType):
        return None if isinstance(value, bool) else got
    if isinstance(t, mi.IntType):
        if not isinstance(value, int) or isinstance(value, bool):
            return got
        if (t.ge is not None and value < t.ge) or (t.le is not None and value > t.le):
            return got
        if (t.gt is not None and value <= t.gt) or (t.lt is not None and value >= t.lt):
            return got
        return None
    if isinstance(t, mi.FloatType):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else got
    if isinstance(t, mi.StrType):
        if not isinstance(value, str):
            return got
        if t.min_length is not None and len(value) < t.min_length:
            return got
        if t.pattern and not re.search(t.pattern, value):
            return got
        return None if _extra_check(value, extra.get("check")) else got
    if isinstance(t, mi.LiteralType | mi.EnumType):
        choices = _choices(t)
        ok = any(value == c and type(value) is type(c) for c in choices) or (
            isinstance(value, str) and value in [c for c in choices if isinstance(c, str)]
        )
        return None if ok else got
    return None


def _extra_check(value: str, check: object) -> bool:
    if check == "interval":
        return durations.is_interval(value)
    if check == "duration":
        return durations.is_duration(value)
    if check == "url":
        return is_http_url(value)
    return True


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an absolute ``http://`` or ``https://`` URL with a host."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _walk_union(
    value: Any, t: mi.UnionType, path: str, out: list[Issue], extra: dict[str, Any]
) -> Any:
    members = [m for m in t.types if not isinstance(m, mi.NoneType)]
    if value is None and len(members) < len(t.types):
        return None
    if len(members) == 1:
        return _walk(value, members[0], path, out, extra)
    for member in members:
        if _kind_fits(value, member):
            return _walk(value, member, path, out, extra)
    out.append(Issue(path, f"expected {_expected(t, extra)}, got {show(value)}"))
    return DROP


def _kind_fits(value: Any, t: mi.Type) -> bool:
    """Whether ``value`` has the JSON kind of ``t`` (constraints aside)."""
    while isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(t, mi.StrType | mi.LiteralType | mi.EnumType):
        return isinstance(value, str)
    if isinstance(t, mi.StructType | mi.DictType):
        return isinstance(value, dict)
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return isinstance(value, list | tuple)
    return True


def _walk_struct(
    value: Any, t: mi.StructType, path: str, out: list[Issue], extra: dict[str, Any]
) -> Any:
    if not isinstance(value, dict):
        out.append(Issue(path, f"expected {_expected(t, extra)}, got {show(value)}"))
        return DROP
    fields = {f.encode_name: f for f in t.fields}
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            out.append(Issue(join(path, str(key)), f"expected a string key, got {show(key)}"))
            continue
        field = fields.get(key)
        if field is None:
            if t.forbid_unknown_fields:
                out.append(Issue(join(path, key), "unknown field" + suggest(key, list(fields))))
            continue
        result = _walk(item, field.type, join(path, key), out, {})
        if result is not DROP:
            cleaned[key] = result
    for name, field in fields.items():
        if field.required and name not in value:
            out.append(Issue(join(path, name), "required field missing"))
    return cleaned


def _walk_list(
    value: Any, item: mi.Type, path: str, out: list[Issue], extra: dict[str, Any]
) -> Any:
    if not isinstance(value, list | tuple):
        out.append(Issue(path, f"expected {extra.get('expected', 'a list')}, got {show(value)}"))
        return DROP
    cleaned = []
    for i, element in enumerate(value):
        result = _walk(element, item, index(path, i), out, {})
        if result is not DROP:
            cleaned.append(result)
    return cleaned


def _walk_dict(
    value: Any, t: mi.DictType, path: str, out: list[Issue], extra: dict[str, Any]
) -> Any:
    if not isinstance(value, dict):
        out.append(Issue(path, f"expected {extra.get('expected', 'an object')}, got {show(value)}"))
        return DROP
    cleaned: dict[Any, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            out.append(Issue(join(path, str(key)), f"expected a string key, got {show(key)}"))
            continue
        result = _walk(item, t.value_type, join(path, key), out, {})
        if result is not DROP:
            cleaned[key] = result
    return cleaned


def decode(cleaned: Any, model: type) -> Any:
    """Decode a cleaned value into ``model``; ``msgspec.ValidationError`` if still invalid."""
    return msgspec.convert(cleaned, model)

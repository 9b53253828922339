"""Label and field selectors as a real API server parses them.

``parse_labels("app=web,tier in (a,b),!legacy")`` and ``parse_fields("metadata.name=x")`` turn
a query parameter into a predicate; a malformed selector raises ``SelectorError`` (a 400).

Label selector grammar: comma-separated requirements, each one of ``key``, ``!key``,
``key=value``, ``key==value``, ``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``.
Field selectors: ``path=value``, ``path==value``, ``path!=value`` on dotted object paths
(``metadata.name``, ``involvedObject.kind``, ``spec.nodeName``, ``status.phase``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

LabelPredicate = Callable[[dict[str, str]], bool]
FieldPredicate = Callable[[dict[str, Any]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")


class SelectorError(ValueError):
    """A selector that does not parse; the message says which part."""


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    if depth != 0:
        raise SelectorError(f"unable to parse requirement: unbalanced parentheses in {selector!r}")
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> LabelPredicate:
    if match := _SET_RE.match(text):
        key, op, raw = match.group(1), match.group(3), match.group(4)
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_RE.match(text):
        key, op, value = match.group(1), match.group(3), match.group(4)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_RE.match(text):
        negate, key = match.group(1) == "!", match.group(2)
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {text.strip()!r}")


def parse_labels(selector: str | None) -> LabelPredicate | None:
    """A predicate on an object's labels, or None for an empty selector (matches all)."""
    if not selector or not selector.strip():
        return None
    requirements = [_requirement(part) for part in _split(selector)]
    return lambda labels: all(req(labels) for req in requirements)


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string form of a dotted path in an object; missing fields are ``""``."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_fields(selector: str | None) -> FieldPredicate | None:
    """A predicate on a whole object, or None for an empty selector."""
    if not selector or not selector.strip():
        return None
    requirements: list[FieldPredicate] = []
    for part in _split(selector):
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not match:
            raise SelectorError(f"invalid selector: {part.strip()!r}; can't understand it")
        path, op, value = match.groups()
        if op == "!=":
            requirements.append(lambda obj, p=path, v=value: field_value(obj, p) != v)
        else:
            requirements.append(lambda obj, p=path, v=value: field_value(obj, p) == v)
    return lambda obj: all(req(obj) for req in requirements)


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions). An empty selector matches all;
    ``None`` (no selector) matches nothing, as in the API."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True

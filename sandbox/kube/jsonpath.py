"""The subset of Kubernetes JSONPath that CRD printer columns use.

``find(obj, ".status.conditions[?(@.type==\\"Ready\\")].status")`` returns the list of matches.
Supported: ``.field``, ``['field.with.dots']``, ``[n]`` (negative too), ``[*]``, ``.*``,
``[?(@.path==value)]`` / ``!=`` filters, and an optional ``{...}`` wrapper.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(
    r"""\.\.?(?P<field>[A-Za-z0-9_\-$]+|\*)"""  # .field or .*
    r"""|\[\s*'(?P<quoted>[^']*)'\s*\]"""  # ['field']
    r"""|\[\s*"(?P<dquoted>[^"]*)"\s*\]"""  # ["field"]
    r"""|\[\s*(?P<index>-?\d+)\s*\]"""  # [0]
    r"""|\[\s*(?P<star>\*)\s*\]"""  # [*]
    r"""|\[\?\(\s*@(?P<fpath>[.A-Za-z0-9_\-]*)\s*(?P<op>==|!=)\s*(?P<fvalue>[^)]*?)\s*\)\]"""
)


class JSONPathError(ValueError):
    pass


def _steps(path: str) -> list[tuple[str, Any]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    if path.startswith("$"):
        path = path[1:]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            raise JSONPathError(f"unrecognized JSONPath at {path[pos:]!r}")
        if match.group("field") is not None:
            name = match.group("field")
            steps.append(("star", None) if name == "*" else ("field", name))
        elif match.group("quoted") is not None:
            steps.append(("field", match.group("quoted")))
        elif match.group("dquoted") is not None:
            steps.append(("field", match.group("dquoted")))
        elif match.group("index") is not None:
            steps.append(("index", int(match.group("index"))))
        elif match.group("star") is not None:
            steps.append(("star", None))
        else:
            raw = match.group("fvalue").strip()
            if raw[:1] in ("'", '"') and raw[-1:] == raw[:1]:
                value: Any = raw[1:-1]
            else:
                try:
                    value = json.loads(raw)
                except ValueError:
                    value = raw
            steps.append(("filter", (match.group("fpath"), match.group("op"), value)))
        pos = match.end()
    return steps


def _lookup(node: Any, dotted: str) -> Any:
    for part in [p for p in dotted.split(".") if p]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def find(obj: Any, path: str) -> list[Any]:
    """Every value the path selects (empty when nothing matches or the path is bad)."""
    try:
        steps = _steps(path)
    except JSONPathError:
        return []
    nodes = [obj]
    for kind, arg in steps:
        nxt: list[Any] = []
        for node in nodes:
            if (kind == "field" and isinstance(node, dict) and arg in node) or (
                kind == "index" and isinstance(node, list) and -len(node) <= arg < len(node)
            ):
                nxt.append(node[arg])
            elif kind == "star":
                if isinstance(node, list):
                    nxt.extend(node)
                elif isinstance(node, dict):
                    nxt.extend(node.values())
            elif kind == "filter" and isinstance(node, list):
                fpath, op, value = arg
                for item in node:
                    found = _lookup(item, fpath)
                    if (found == value) == (op == "=="):
                        nxt.append(item)
        nodes = nxt
    return nodes


def text(value: Any) -> str:
    """A value as JSONPath prints it: strings bare, maps and lists as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)

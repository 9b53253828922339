"""Mutations: how a valid message is spoiled, one way per label.

``mutate(draw, label, value)`` encodes ``value`` with ``messages.ENCODER`` and, unless the label
is ``valid``, spoils it once:

    random-bytes    bytes / text that is not a message at all
    truncated       a valid payload cut short
    deep-ignored    JSON nested 50..3000 levels deep in an extra (ignored) field
    deep-field      the same nesting in place of a real field
    wrong-kind      a bad ``kind`` tag (unknown, another type's, not a string, missing)
    wrong-type      a field of the wrong JSON type
    huge-string     a string field of up to ~900 KB (payload below the 1 MB max payload)
    number          out-of-range or odd numbers: 1e309, -1, 2**70, NaN spelled many ways, ...
    k8s-name        names at and past Kubernetes' limits (63/64, 253/254, a few KB, spaces,
                    dots, unicode) in the canary reference and other name fields
    missing-field   a field removed
    json-edge       BOM, trailing garbage, duplicate keys, invalid UTF-8, lone surrogates, ...
    secret-url      (webhook) an unparseable URL carrying ``token=FUZZSECRET``

The odd values the mutations draw from come first, then the helpers that edit a message as a
JSON document (paths, replace, delete), then the mutations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from hypothesis import strategies as st

from libs import messages
from tests.fuzz import values

# nats-server's default max_payload is 1 MiB (headers included); stay below it with room.
MAX_PAYLOAD_BYTES = 1_000_000
HUGE_MAX_CHARS = 900_000
# msgspec's decoder recurses once per level against Python's recursion limit (1000 in the
# services and here): depths near 1000 would make the prediction depend on the stack depth of
# the caller, so they are left out.
NESTING_DEPTHS = st.one_of(st.integers(50, 880), st.integers(1120, 3000))

# ----------------------------------------------------------------------------- odd values

_NAME_EDGES: tuple[str, ...] = (
    "a b",
    " ",
    "",
    "my.app",
    "a.b.c",
    ".",
    "-lead",
    "trail-",
    "UPPER",
    "ünïcödé",
    "名前",
    "😀",
    "a\tb",
    "a\nb",
    "a/b",
    "a*b",
    "a>b",
    "*",
    ">",
    "a\x00b",
    "a\u200bb",
    "$SYS",
    "_INBOX",
    "0",
    "-",
)
k8s_names = st.one_of(
    st.sampled_from(["a" * 63, "a" * 64, "n" * 253, "n" * 254]),
    # legal subject tokens a few KB long: a canary name the analyzer turns into a tick subject
    st.builds(str.__mul__, st.sampled_from("an0_-"), st.integers(255, 8000)),
    st.builds(str.__mul__, st.sampled_from("an0_-"), st.integers(1000, 8000)),
    st.sampled_from(_NAME_EDGES),
    st.text(min_size=1, max_size=70),
)
_NAME_KEYS = frozenset({"namespace", "name", "target", "workload", "service", "route", "webhook"})

_NUMBERS: tuple[bytes, ...] = (
    b"1e309",
    b"-1e309",
    b"1e999",
    b"-1",
    b"-1.5",
    b"2e9",
    str(2**70).encode(),
    str(-(2**70)).encode(),
    str(2**64).encode(),
    str(2**63).encode(),
    str(-(2**63) - 1).encode(),
    b"NaN",
    b"nan",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"inf",
    b'"NaN"',
    b'"Infinity"',
    b'"1e309"',
    b"0",
    b"-0",
    b"-0.0",
    b"1e-320",
    b"1.7976931348623157e308",
    b"9007199254740993",
    b"1E+2",
    b"101",
    b"0x10",
    b"01",
    b"+1",
    b".5",
    b"1.",
    b"1e",
    b"1" * 5000,
)
_WRONG_TYPES = st.one_of(
    st.text(max_size=10),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_BAD_KINDS: tuple[Any, ...] = (
    "",
    "no-such-kind",
    "Revision_Detected",
    "revision_detected ",
    "revision-detected",
    "set_weights\x00",
    "KIND",
    1,
    None,
    True,
    [],
    {},
    ["revision_detected"],
)
# characters for huge strings: token-legal ones, multi-byte ones and ones JSON escapes
_HUGE_CHARS: tuple[str, ...] = ("a", "-", "Z", "é", "😀", "\x00", '"', "\\", " ", ".")


def nested_json(depth: int, shape: str) -> bytes:
    """JSON nested ``depth`` levels deep: arrays, objects, or both alternating."""
    if shape == "array":
        return b"[" * depth + b"]" * depth
    if shape == "object":
        return b'{"n":' * depth + b"0" + b"}" * depth
    half = max(1, depth // 2)
    return b'[{"n":' * half + b"0" + b"}]" * half


# ----------------------------------------------------------------------------- documents

Path = tuple[str | int, ...]


def _nodes(doc: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) below the root of a JSON document."""
    items: Any
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return
    for key, value in items:
        path = (*prefix, key)
        yield path, value
        yield from _nodes(value, path)


def _replace(doc: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], rest, value) if rest else value  # may add a key
    return copy


def _delete(doc: Any, path: Path) -> Any:
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    if rest:
        copy[head] = _delete(doc[head], rest)
    else:
        del copy[head]
    return copy


def _encode(doc: Any) -> bytes:
    """JSON of a document; ``msgspec.Raw`` pieces are copied verbatim (even when not JSON)."""
    return msgspec.json.encode(doc)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if _is_number(value):
        return "number"
    return type(value).__name__


# ----------------------------------------------------------------------------- mutations


def _huge(draw: st.DrawFn, doc: Any, path: Path) -> Any:
    char = draw(st.sampled_from(_HUGE_CHARS))
    per_char = len(msgspec.json.encode(char)) - 2
    budget = (MAX_PAYLOAD_BYTES - len(_encode(doc)) - 256) // per_char
    most = max(1, min(HUGE_MAX_CHARS, budget))
    count = draw(st.integers(min(1000, most), most))
    if path and path[-1] == "url":  # keep the host: only the path grows
        return _replace(doc, path, f"http://{values.REFUSED_HOST}/" + char * count)
    return _replace(doc, path, char * count)


def mutate(draw: st.DrawFn, label: str, value: msgspec.Struct) -> bytes:
    """The payload of one example: ``value`` encoded, then spoiled as ``label`` says."""
    valid = messages.ENCODER.encode(value)
    doc = msgspec.to_builtins(value)
    nodes = list(_nodes(doc))
    paths = [path for path, _ in nodes]
    string_paths = [path for path, v in nodes if isinstance(v, str)]
    if label == "valid":
        return valid
    if label == "random-bytes":
        return draw(
            st.one_of(
                st.binary(max_size=512),
                st.text(max_size=200).map(str.encode),
                st.sampled_from(
                    [b"", b" ", b"\x00", b"null", b"{}", b"[]", b'"', b"{", b"\xff\xfe", b"}{"]
                ),
            )
        )
    if label == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if label == "deep-ignored":
        objects: list[Path] = [()] + [
            p for p, v in nodes if isinstance(v, dict) and p[-1] in ("canary", "webhook")
        ]
        where = draw(st.sampled_from(objects))
        depth = draw(NESTING_DEPTHS)
        shape = draw(st.sampled_from(["array", "object", "mixed"]))
        target = _replace(doc, (*where, "x_fuzz_nested"), msgspec.Raw(nested_json(depth, shape)))
        return _encode(target)
    if label == "deep-field":
        where = draw(st.sampled_from(paths))
        depth = draw(NESTING_DEPTHS)
        shape = draw(st.sampled_from(["array", "object", "mixed"]))
        return _encode(_replace(doc, where, msgspec.Raw(nested_json(depth, shape))))
    if label == "wrong-kind":
        if isinstance(doc, dict) and "kind" in doc and draw(st.booleans()):
            return _encode(_delete(doc, ("kind",)))
        other = st.sampled_from(values.EVENT_KINDS + values.COMMAND_KINDS)
        kind = draw(st.one_of(st.sampled_from(_BAD_KINDS), other, st.text(max_size=20)))
        return _encode({**doc, "kind": kind})
    if label == "wrong-type":
        where = draw(st.sampled_from(paths))
        current = _json_type(dict(nodes)[where])
        replacement = draw(_WRONG_TYPES.filter(lambda v: _json_type(v) != current))
        return _encode(_replace(doc, where, replacement))
    if label == "huge-string":
        canary = [p for p in string_paths if len(p) >= 2 and p[-2] == "canary"]
        pool = canary if canary and draw(st.booleans()) else string_paths
        return _encode(_huge(draw, doc, draw(st.sampled_from(pool))))
    if label == "number":
        numeric = [p for p, v in nodes if _is_number(v)] or paths
        token = draw(st.sampled_from(_NUMBERS))
        return _encode(_replace(doc, draw(st.sampled_from(numeric)), msgspec.Raw(token)))
    if label == "k8s-name":
        canary = [p for p in string_paths if len(p) >= 2 and p[-2] == "canary"]
        named = [p for p in string_paths if p[-1] in _NAME_KEYS] or string_paths
        pool = canary if canary and draw(st.integers(0, 9)) < 7 else named
        chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
        for where in chosen:
            doc = _replace(doc, where, draw(k8s_names))
        return _encode(doc)
    if label == "missing-field":
        keyed = [p for p in paths if isinstance(p[-1], str)]
        return _encode(_delete(doc, draw(st.sampled_from(keyed))))
    if label == "json-edge":
        return _json_edge(draw, doc, valid, string_paths)
    if label == "secret-url":
        url = draw(st.sampled_from(values.UNPARSEABLE_URLS))
        return _encode(_replace(doc, ("webhook", "url"), url))
    raise AssertionError(f"unknown label {label}")


def _json_edge(draw: st.DrawFn, doc: Any, valid: bytes, string_paths: list[Path]) -> bytes:
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return draw(st.sampled_from([b"[]", b"null", b"1", b'"x"', b"true", b"[" + valid + b"]"]))
    if choice == 1:
        return b"\xef\xbb\xbf" + valid  # UTF-8 byte order mark
    if choice == 2:
        return valid + draw(st.sampled_from([b"x", b"\x00", b",", valid, b"]"]))
    if choice == 3:
        return b" \n\t" + valid + b"\r\n"  # surrounding whitespace is legal JSON
    if choice == 4:  # a duplicate key, the last one wrong
        return valid[:-1] + b',"canary":' + draw(st.sampled_from([b"5", b"{}", b"null"])) + b"}"
    if choice == 5:  # a duplicate key, the last one right
        return valid[:-1] + b',"canary":{"namespace":"test","name":"podinfo"}}'
    if choice == 6 and string_paths:  # invalid UTF-8 inside a string
        where = draw(st.sampled_from(string_paths))
        return _encode(_replace(doc, where, msgspec.Raw(b'"\xff\xfe\xc3"')))
    if choice == 7 and string_paths:  # lone surrogates
        where = draw(st.sampled_from(string_paths))
        return _encode(_replace(doc, where, msgspec.Raw(b'"\\ud800\\udfff\\ud800"')))
    if choice == 8 and string_paths:  # escapes and control characters
        where = draw(st.sampled_from(string_paths))
        soup = b'"\\u0000\\n\\r\\t\\"\\\\\\/\\u2028\\u001b[31m"'
        return _encode(_replace(doc, where, msgspec.Raw(soup)))
    if choice == 9 and string_paths:  # a raw control character inside a string: not JSON
        where = draw(st.sampled_from(string_paths))
        return _encode(_replace(doc, where, msgspec.Raw(b'"a\nb\x00"')))
    if choice == 10:  # the whole document nested
        depth = draw(NESTING_DEPTHS)
        return nested_json(depth, draw(st.sampled_from(["array", "object", "mixed"])))
    return valid.replace(b":", b" : ", 3)  # legal spacing

"""JSON Schemas of every message on the bus, generated from ``libs.messages``.

``python -m libs.schemas docs/events`` (``make schemas``) writes one file per message family;
a test fails when the committed files differ from what the code generates, so integrations in
other languages can trust ``docs/events/``.
"""

from __future__ import annotations

import pathlib
import sys

import msgspec

from libs import messages


def render() -> dict[str, bytes]:
    """File name → formatted JSON Schema."""
    out: dict[str, bytes] = {}
    for name, typ in messages.SCHEMA_TYPES.items():
        schema = msgspec.json.schema(typ)
        schema["title"] = f"Sluice {name}"
        out[f"{name}.schema.json"] = (
            msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n"
        )
    return out


def write(directory: pathlib.Path) -> list[pathlib.Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, body in render().items():
        path = directory / file_name
        path.write_bytes(body)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m libs.schemas DIRECTORY", file=sys.stderr)
        return 2
    for path in write(pathlib.Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

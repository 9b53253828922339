"""The protobuf bodies of kubectl's typed clients (create namespace|configmap|secret)."""

from __future__ import annotations

import pytest

from sandbox.kube import protobuf


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: bytes | int | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version) + _field(2, kind)
    return protobuf.MAGIC + _field(1, type_meta) + _field(2, raw) + _field(3, "") + _field(4, "")


def test_configmap() -> None:
    meta = (
        _field(1, "settings")
        + _field(2, "")
        + _field(3, "default")
        + _field(11, _field(1, "app") + _field(2, "web"))
        + _field(8, b"")
    )
    raw = (
        _field(1, meta)
        + _field(2, _field(1, "color") + _field(2, "blue"))
        + _field(2, _field(1, "size") + _field(2, "L"))
        + _field(3, _field(1, "bin") + _field(2, b"\x00\x01"))
    )
    assert protobuf.decode(_envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default", "labels": {"app": "web"}},
        "data": {"color": "blue", "size": "L"},
        "binaryData": {"bin": "AAE="},
    }


def test_namespace_and_secret() -> None:
    namespace = _field(1, _field(1, "team")) + _field(2, _field(1, "kubernetes")) + _field(3, b"")
    assert protobuf.decode(_envelope("v1", "Namespace", namespace)) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team"},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {},
    }
    secret = (
        _field(1, _field(1, "s"))
        + _field(2, _field(1, "k") + _field(2, b"v"))
        + _field(3, "Opaque")
        + _field(5, 1)
    )
    assert protobuf.decode(_envelope("v1", "Secret", secret)) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "dg=="},
        "type": "Opaque",
        "immutable": True,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{}", "magic"),
        (_envelope("apps/v1", "StatefulSet", b""), "not StatefulSet"),
        (protobuf.MAGIC + b"\x0a\xff", "truncated"),
    ],
)
def test_unsupported(body: bytes, message: str) -> None:
    with pytest.raises(protobuf.Unsupported, match=message):
        protobuf.decode(body)

"""The ``apisix.apache.org/v2`` ApisixPluginConfig (ingress-controller CRD): a named set of
plugins that ApisixRoute rules share through ``plugin_config_name``."""

from __future__ import annotations

from typing import Any

import msgspec

from libs import errors
from libs.model import meta, structural
from libs.model.apisixroute import Plugin


class ApisixPluginConfigSpec(meta.Model, frozen=True):
    """``spec`` of an ApisixPluginConfig."""

    ingress_class_name: str | None = None
    plugins: tuple[Plugin, ...] = ()


class ApisixPluginConfigStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Status written by the ingress controller (kept loosely typed)."""

    conditions: tuple[dict[str, Any], ...] = ()


class ApisixPluginConfig(meta.Object, frozen=True):
    """An ApisixPluginConfig object."""

    spec: ApisixPluginConfigSpec
    status: ApisixPluginConfigStatus | None = None


def parse_apisix_plugin_config(obj: dict[str, Any]) -> ApisixPluginConfig:
    """Validate and decode one ApisixPluginConfig; ``InvalidInput`` lists every problem, each
    with its field path (``spec.plugins[0].enable: expected bool ...``)."""
    issues, cleaned = structural.check(obj, ApisixPluginConfig)
    messages = [f"{i.path}: {i.message}" for i in issues]
    if messages or cleaned is None:
        first = messages[0] if messages else ": invalid object"
        path, _, expected = first.partition(": ")
        raise errors.InvalidInput("\n".join(messages) or first, path=path, expected=expected)
    result: ApisixPluginConfig = structural.decode(cleaned, ApisixPluginConfig)
    return result

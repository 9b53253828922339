"""``plugin_config_name``: an ApisixRoute rule sharing an ApisixPluginConfig's plugins.

The controller turns each ApisixPluginConfig into an APISIX plugin config named
``<namespace>_<name>`` (its enabled plugins only) and gives the rule's route its id as
``plugin_config_id``; ``plugin_config_namespace`` defaults to the ApisixRoute's namespace.
APISIX merges the two per request: every plugin of the plugin config that the route does not
configure itself is added, so the rule's own plugin wins on a name clash.

A rule naming an ApisixPluginConfig that does not exist cannot reach APISIX (its Admin API
refuses a route whose ``plugin_config_id`` is unknown), so the rule is left out and the
ApisixRoute's status says why (``PluginConfigNotFound``).

``merged`` returns the plugins the route runs as ``Entry`` values, each with the field path of
its config (in the ApisixRoute or the ApisixPluginConfig), so that a plugin's schema errors
name the object it came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sandbox.gateway import upstreams

Obj = dict[str, Any]
Key = tuple[str, str]


class PluginConfigNotFound(upstreams.TranslationError):
    """The rule's ApisixPluginConfig does not exist: the rule cannot reach APISIX."""


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    enable: bool
    config: Any
    path: str  # of the config, for error messages


def compose_plugin_config_name(namespace: str, name: str) -> str:
    return f"{namespace}_{name}"


def rule_entries(rule: Obj, path: str) -> list[Entry]:
    """The rule's own ``plugins[]``, in order."""
    return [
        Entry(
            p.get("name", ""),
            p.get("enable") is True,
            p.get("config"),
            f"{path}.plugins[{i}].config",
        )
        for i, p in enumerate(rule.get("plugins") or [])
    ]


def reference(namespace: str, rule: Obj) -> Key | None:
    """(namespace, name) of the rule's ApisixPluginConfig, None when it names none."""
    name = rule.get("plugin_config_name") or ""
    if not name:
        return None
    return (rule.get("plugin_config_namespace") or namespace, name)


def merged(
    namespace: str, rule: Obj, plugin_configs: Mapping[Key, Obj], path: str
) -> tuple[list[Entry], str]:
    """The rule's plugin entries with its ApisixPluginConfig's enabled plugins added where the
    rule does not enable a plugin of that name; and the plugin config's APISIX id ('' if none).
    ``PluginConfigNotFound`` when the named ApisixPluginConfig does not exist."""
    own = rule_entries(rule, path)
    ref = reference(namespace, rule)
    if ref is None:
        return own, ""
    apc = plugin_configs.get(ref)
    if apc is None or (apc.get("metadata") or {}).get("deletionTimestamp"):
        raise PluginConfigNotFound(
            f"ApisixPluginConfig {ref[0]}/{ref[1]} not found - at {path}.plugin_config_name"
        )
    enabled = {e.name for e in own if e.enable}
    shared = [
        Entry(
            p.get("name", ""),
            True,
            p.get("config"),
            f"ApisixPluginConfig {ref[0]}/{ref[1]}: $.spec.plugins[{i}].config",
        )
        for i, p in enumerate((apc.get("spec") or {}).get("plugins") or [])
        if p.get("enable") is True and p.get("name", "") not in enabled
    ]
    return shared + own, upstreams.gen_id(compose_plugin_config_name(*ref))

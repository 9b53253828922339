"""The parts events, observations and commands share: the vocabulary of Flagger's objects
(declared once, in the model), canary references and A/B match conditions."""

from __future__ import annotations

import typing
from collections.abc import Iterable

import msgspec

from libs.model import analysis
from libs.model import canary as canary_model

# The vocabulary of Flagger's objects is shared with the model, declared once there.
Severity = analysis.Severity
Phase = canary_model.Phase
WebhookType = analysis.WebhookType
ControlAction = canary_model.ControlAction
CONTROL_ACTIONS: tuple[str, ...] = typing.get_args(canary_model.ControlAction)


class CanaryRef(msgspec.Struct, frozen=True, kw_only=True):
    namespace: str
    name: str


class MatchCondition(msgspec.Struct, frozen=True, kw_only=True):
    """One A/B routing condition: one header or query parameter of an ``analysis.match`` entry."""

    scope: str  # "header" | "query"
    name: str
    op: str  # "exact" | "prefix" | "suffix" | "regex"
    value: str


def match_groups(entries: Iterable[analysis.MatchCondition]) -> list[list[MatchCondition]]:
    """Flagger's ``analysis.match`` as routing groups: a request matches when every condition
    of at least one group holds (entries are OR-ed, the conditions of an entry AND-ed)."""
    groups: list[list[MatchCondition]] = []
    for entry in entries:
        group = [
            MatchCondition(scope=scope, name=name, op=op, value=value)
            for scope, conditions in (("header", entry.headers), ("query", entry.query_params))
            for name, condition in sorted(conditions.items())
            for op, value in condition.operators()
        ]
        if group:
            groups.append(group)
    return groups

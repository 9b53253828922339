"""Flagger's own objects as observations — pure functions.

* ``observe_canary`` — a Canary as a ``CanaryObservation``: validated with ``libs.model`` into
  the model (spec and status), or, when it is invalid, no model and every problem as the line
  ``sluice validate`` prints (``broken (Canary, test): spec.analysis.stepWeights[1]: ...``).
  ``uid``, ``resourceVersion`` and ``generation`` come from the raw metadata either way.
* ``observe_template`` — a MetricTemplate as a ``TemplateObservation``, by the same rule. A
  provider's ``secretRef`` is a reference in the model; nothing here reads the Secret.
* ``slim`` — what is left out before validating: ``metadata.managedFields`` (the server's
  bookkeeping, untyped and often bigger than the object) and the
  ``kubectl.kubernetes.io/last-applied-configuration`` annotation (a second copy of the
  object). The informer's cached dict is never changed.
* ``primary_name`` — Flagger's primary workload of a target: ``<targetRef.name>-primary``.
* ``stored_is_current`` — whether a stored observation of an object stays rather than being
  replaced: it says the same, or it is of a later version of the same object (a lagging
  watcher replica must not overwrite it).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from libs import errors, messages
from libs.model import canary as canary_model
from libs.model import meta
from libs.model import templates as templates_model

Obj = dict[str, Any]
LAST_APPLIED = meta.LAST_APPLIED
slim = meta.slim  # shared with the analyzer, which reads Canaries fresh too
PRIMARY_SUFFIX = "-primary"


def primary_name(target: str) -> str:
    """The primary Deployment Flagger (and Sluice's traffic-shifter) makes of a target."""
    return f"{target}{PRIMARY_SUFFIX}"


def problem_lines(exc: errors.InvalidInput) -> list[str]:
    """The problems of an invalid object, one per line, as ``sluice validate`` prints them."""
    return [line for line in exc.message.split("\n") if line.strip()]


def _identity(obj: Obj) -> dict[str, Any]:
    """The observation fields every object has: namespace, name, uid, resource_version and
    generation (0 when absent), from its metadata."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    generation = meta.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool):
        generation = 0
    return {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "uid": str(meta.get("uid") or ""),
        "resource_version": str(meta.get("resourceVersion") or ""),
        "generation": generation,
    }


def observe_canary(raw: Obj) -> messages.CanaryObservation:
    identity = _identity(raw)
    try:
        model = canary_model.parse_canary(slim(raw))
    except errors.InvalidInput as exc:
        return messages.CanaryObservation(**identity, problems=problem_lines(exc))
    return messages.CanaryObservation(**identity, canary=model)


def observe_template(raw: Obj) -> messages.TemplateObservation:
    identity = _identity(raw)
    try:
        model = templates_model.parse_metric_template(slim(raw))
    except errors.InvalidInput as exc:
        return messages.TemplateObservation(**identity, problems=problem_lines(exc))
    return messages.TemplateObservation(**identity, template=model)


V = TypeVar("V", bound=msgspec.Struct)
ObjectObservation = messages.CanaryObservation | messages.TemplateObservation


def without_time(observation: V) -> V:
    """The observation with ``observed_at_ms`` zeroed: equal ones say the same thing."""
    return msgspec.structs.replace(observation, observed_at_ms=0)


def stored_is_current(stored: ObjectObservation | None, current: ObjectObservation) -> bool:
    """Whether ``stored`` stays: it equals ``current`` but for the time, or it is of a later
    version of the same object. Kubernetes resourceVersions are compared only within one uid
    and only when both are decimal (etcd revisions); otherwise the newest write wins."""
    if stored is None:
        return False
    if without_time(stored) == without_time(current):
        return True
    if stored.uid != current.uid:
        return False
    old, new = stored.resource_version, current.resource_version
    return old.isdecimal() and new.isdecimal() and int(old) > int(new)

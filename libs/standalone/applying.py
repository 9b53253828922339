"""``sluice apply -f`` in standalone mode: YAML documents into the KV buckets.

Every document is validated first, as ``sluice validate`` does; one problem anywhere and
nothing is applied (never half a set of files). Then each ``ApisixCanary`` goes to
``sluice_canaries`` (its spec, keeping its status: ``store.CanaryStore.apply``) and each
``MetricTemplate`` to ``sluice_templates``, where the analyzer reads them. The watcher applies
``SLUICE_CANARIES_DIR`` the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from nats.js.kv import KeyValue

from libs import bus, errors, messages
from libs.model import standalone, templates, validation
from libs.model.documents import Document
from libs.standalone import store as canary_store

APPLIED_KINDS = (standalone.KIND, templates.KIND)


@dataclasses.dataclass(frozen=True)
class Applied:
    label: str  # "podinfo (ApisixCanary, default)"
    outcome: str  # created | configured | unchanged


def check(docs: Sequence[Document]) -> list[Document]:
    """The documents to apply; ``InvalidInput`` listing every problem, or naming a kind that
    standalone mode does not keep."""
    problems = [str(p) for p in validation.validate(docs)]
    for doc in docs:
        if isinstance(doc.data, dict) and doc.kind not in APPLIED_KINDS:
            problems.append(
                f"{doc.label}: kind: expected one of {', '.join(APPLIED_KINDS)} in standalone "
                f"mode, got {doc.kind!r}"
            )
    if problems:
        raise errors.InvalidInput("\n".join(problems), path="kind")
    return list(docs)


async def apply(
    docs: Sequence[Document],
    canaries: KeyValue,
    templates_kv: KeyValue,
    timeout_s: float = 5.0,
) -> list[Applied]:
    """Validate ``docs`` as a whole, then apply them in order."""
    store = canary_store.CanaryStore(canaries, timeout_s)
    applied: list[Applied] = []
    for doc in check(docs):
        if doc.kind == standalone.KIND:
            obj = validation.parse_one(doc.data, standalone.ApisixCanary)
            outcome = await store.apply(obj)
        else:
            outcome = await _apply_template(doc, templates_kv, timeout_s)
        applied.append(Applied(doc.label, outcome))
    return applied


async def _apply_template(doc: Document, kv: KeyValue, timeout_s: float) -> str:
    template = templates.parse_metric_template(doc.data)
    namespace = template.metadata.namespace or standalone.DEFAULT_NAMESPACE
    name = template.metadata.name or ""
    key = messages.template_key(namespace, name)
    previous = None
    try:
        with bus.nats_errors(f"reading {key}", timeout_s):
            entry = await kv.get(key)
        if entry.value:
            previous = bus.decode(messages.TEMPLATE_OBSERVATION_DECODER, entry.value)
    except errors.NotFound:
        pass
    if previous is not None and previous.template == template:
        return "unchanged"
    generation = (previous.generation + 1) if previous is not None else 1
    observation = messages.TemplateObservation(
        namespace=namespace,
        name=name,
        uid="",
        resource_version=str(generation),
        generation=generation,
        template=template,
    )
    with bus.nats_errors(f"writing {key}", timeout_s):
        await kv.put(key, messages.ENCODER.encode(observation))
    return "configured" if previous is not None else "created"

"""Standalone mode: a canary on plain APISIX, declared without Kubernetes.

An ``ApisixCanary`` (``sluice.dev/v1alpha1``) names the user's APISIX route and two upstreams,
and carries the same ``analysis`` section as a Flagger Canary::

    apiVersion: sluice.dev/v1alpha1
    kind: ApisixCanary
    metadata:
      name: podinfo
      namespace: default          # optional: groups canaries, as a namespace does
    spec:
      route:
        id: podinfo               # the route whose traffic is split
      upstreams:
        stable:                   # optional: the route's own upstream when left out;
          id: podinfo-stable      # an id (promotion writes the canary's nodes into it)
        canary:
          nodes: ["10.0.0.12:9898"]   # or id: podinfo-canary
      revision: "6.0.0"           # optional: the version running when the canary is applied
      progressDeadlineSeconds: 600
      skipAnalysis: false
      suspend: false
      analysis: {...}             # Flagger's CanaryAnalysis, unchanged

The analyzer runs the same state machine on it as on a Flagger Canary (``to_canary`` gives
the Canary it steps); the traffic-shifter splits the route with APISIX's ``traffic-split``
plugin through the Admin API. Canary state lives in the ``sluice_canaries`` KV bucket.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from libs.model import meta

API_GROUP = "sluice.dev"
API_VERSION = "sluice.dev/v1alpha1"
KIND = "ApisixCanary"
DEFAULT_NAMESPACE = "default"
INITIAL_REVISION = "initial"  # the first revision's name when ``spec.revision`` is left out

# APISIX ids: 1-64 characters of letters, digits, dash, dot and underscore
ApisixId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-zA-Z0-9\-_.]{1,64}$",
        extra={"expected": "an APISIX id (1-64 of letters, digits, -, _ and .)"},
    ),
]
NODE_PATTERN = r"^[a-zA-Z0-9\-_.\[\]:]+:[0-9]{1,5}$"
Node = Annotated[str, msgspec.Meta(pattern=NODE_PATTERN, extra={"expected": "a node as host:port"})]
NodeWeight = Annotated[int, msgspec.Meta(ge=0, extra={"expected": "a node weight >= 0"})]


class RouteSpec(meta.Model, frozen=True):
    """The user's APISIX route."""

    id: ApisixId


class UpstreamSpec(meta.Model, frozen=True):
    """An upstream: an APISIX upstream ``id``, or its ``nodes`` (``host:port``, a list with
    weight 1 each, or a map of node to weight as APISIX writes it). Exactly one of the two."""

    id: ApisixId | None = None
    nodes: tuple[Node, ...] | dict[str, NodeWeight] | None = None  # map keys: checked in problems

    def node_weights(self) -> dict[str, int]:
        """``nodes`` as APISIX's hash form (empty for an ``id``)."""
        if self.nodes is None:
            return {}
        if isinstance(self.nodes, dict):
            return dict(self.nodes)
        return {node: 1 for node in self.nodes}


class Upstreams(meta.Model, frozen=True):
    canary: UpstreamSpec
    stable: UpstreamSpec | None = None


class ApisixCanarySpec(meta.Model, frozen=True):
    route: RouteSpec
    upstreams: Upstreams
    revision: str | None = None
    progress_deadline_seconds: meta.NonNegative | None = None
    skip_analysis: bool = False
    suspend: bool = False
    analysis: analysis_model.CanaryAnalysis | None = None


class ApisixCanary(meta.Object, frozen=True):
    """A standalone canary as the user declares it."""

    spec: ApisixCanarySpec
    status: canary_model.CanaryStatus | None = None


class ApisixTarget(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the traffic-shifter needs to split a standalone canary's route (on the bus and in
    KV beside the canary, snake_case like every message)."""

    route_id: str
    canary: UpstreamSpec
    stable: UpstreamSpec | None = None
    initial_revision: str = INITIAL_REVISION  # what ran when the canary was first applied


def target_of(obj: ApisixCanary) -> ApisixTarget:
    return ApisixTarget(
        route_id=obj.spec.route.id,
        canary=obj.spec.upstreams.canary,
        stable=obj.spec.upstreams.stable,
        initial_revision=obj.spec.revision or INITIAL_REVISION,
    )


NODES_ANNOTATION = "sluice.dev/canary-nodes"  # set by the analyzer, in memory, for its checks
PRIMARY_NODES_ANNOTATION = "sluice.dev/primary-nodes"


def is_standalone(canary: canary_model.Canary) -> bool:
    """Whether a Canary stands for an ApisixCanary (``to_canary``)."""
    return canary.api_version == API_VERSION


def with_nodes(
    canary: canary_model.Canary, nodes: list[str], primary_nodes: list[str]
) -> canary_model.Canary:
    """``canary`` carrying the nodes its metric checks tell the canary and the primary by."""
    annotations = {
        **canary.metadata.annotations,
        NODES_ANNOTATION: ",".join(nodes),
        PRIMARY_NODES_ANNOTATION: ",".join(primary_nodes),
    }
    metadata = msgspec.structs.replace(canary.metadata, annotations=annotations)
    return msgspec.structs.replace(canary, metadata=metadata)


def node_host(node: str) -> str:
    """``10.0.0.12:9898`` -> ``10.0.0.12`` (``[::1]:80`` -> ``::1``)."""
    host = node.rsplit(":", 1)[0] if ":" in node else node
    return host.strip("[]")


def nodes_regex(nodes: list[str]) -> str:
    """A PromQL regex (inside a double-quoted string) matching these nodes' hosts, as APISIX's
    ``node`` label names the upstream that served a request: its IP, without the port. One
    that matches nothing when there are none."""
    hosts = sorted({node_host(node) for node in nodes})
    if not hosts:
        return "^$"
    escaped = (re.escape(host).replace("\\", "\\\\") for host in hosts)
    return "|".join(escaped)


def variables(canary: canary_model.Canary, *, primary: bool = False) -> dict[str, str]:
    """Template variables of a standalone canary: ``nodes``, the regex of the side checked
    (the canary's, or the primary's for a relative check's primary side)."""
    if not is_standalone(canary):
        return {}
    key = PRIMARY_NODES_ANNOTATION if primary else NODES_ANNOTATION
    found = canary.metadata.annotations.get(key, "")
    return {"nodes": nodes_regex([n for n in found.split(",") if n])}


def problems(obj: ApisixCanary) -> list[tuple[str, str]]:
    """Rules beyond the structure: ``(path, message)`` pairs."""
    found: list[tuple[str, str]] = []
    for side in ("stable", "canary"):
        spec: UpstreamSpec | None = getattr(obj.spec.upstreams, side)
        if spec is None:
            continue
        path = f"spec.upstreams.{side}"
        if (spec.id is None) == (spec.nodes is None):
            found.append((path, "expected exactly one of id or nodes"))
        elif spec.nodes is not None and not spec.nodes:
            found.append((f"{path}.nodes", "expected at least one node"))
        elif isinstance(spec.nodes, dict) and (
            bad := [n for n in spec.nodes if not re.match(NODE_PATTERN, n)]
        ):
            found.append((f"{path}.nodes", f"expected nodes as host:port, got {bad[0]!r}"))
        elif spec.nodes is not None and not any(spec.node_weights().values()):
            found.append((f"{path}.nodes", "expected a node with a weight above 0"))
    if obj.spec.analysis is not None and obj.spec.analysis.alerts:
        found.append(
            (
                "spec.analysis.alerts",
                "expected none in standalone mode: AlertProviders are Kubernetes objects; the "
                "notifier's global settings (SLUICE_SLACK_URL, SLUICE_MSTEAMS_URL, "
                "SLUICE_EVENT_WEBHOOK_URL) tell about every standalone canary",
            )
        )
    stable, canary = obj.spec.upstreams.stable, obj.spec.upstreams.canary
    if stable is not None and stable.id is None and stable.nodes is not None:
        found.append(
            (
                "spec.upstreams.stable.nodes",
                "expected an upstream id instead: promotion writes the canary's nodes into the "
                "stable upstream (leave stable out to use the route's own upstream)",
            )
        )
    if stable is not None and stable.id is not None and stable.id == canary.id:
        found.append(("spec.upstreams.canary.id", "expected an upstream other than the stable one"))
    if (
        stable is not None
        and stable.nodes is not None
        and canary.nodes is not None
        and {node_host(n) for n in stable.node_weights()}
        & {node_host(n) for n in canary.node_weights()}
    ):
        found.append(
            (
                "spec.upstreams.canary.nodes",
                "expected hosts other than the stable upstream's (APISIX's node label is the "
                "host without its port: the builtin checks could not tell them apart)",
            )
        )
    return found


def to_canary(obj: ApisixCanary, metadata: dict[str, Any] | None = None) -> canary_model.Canary:
    """The Flagger Canary the analyzer steps for ``obj``: the target is the canary upstream
    (named like the canary), the route is the APISIX route, and a deletion always gives the
    route back as it was (``revertOnDeletion``)."""
    name = obj.metadata.name or ""
    meta_obj = obj.metadata
    if metadata:
        meta_obj = msgspec.convert(
            {**msgspec.to_builtins(obj.metadata), **metadata}, meta.ObjectMeta
        )
    return canary_model.Canary(
        api_version=API_VERSION,
        kind=canary_model.KIND,
        metadata=msgspec.structs.replace(
            meta_obj, namespace=obj.metadata.namespace or DEFAULT_NAMESPACE
        ),
        spec=canary_model.CanarySpec(
            target_ref=canary_model.TargetRef(api_version=API_VERSION, kind="Service", name=name),
            service=canary_model.CanaryService(port=80),
            route_ref=canary_model.RouteRef(
                api_version=API_VERSION, kind="ApisixRoute", name=obj.spec.route.id
            ),
            progress_deadline_seconds=obj.spec.progress_deadline_seconds,
            skip_analysis=obj.spec.skip_analysis,
            revert_on_deletion=True,
            suspend=obj.spec.suspend,
            analysis=obj.spec.analysis,
        ),
        status=obj.status,
    )

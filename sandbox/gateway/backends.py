"""A rule's ``backends[]`` and ``upstreams[]`` → the route's upstream and traffic-split's
weighted upstreams, as apisix-ingress-controller combines them (``targets``' docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.gateway import upstreams

Obj = dict[str, Any]
Key = tuple[str, str]


def targets(
    namespace: str,
    rule: Obj,
    services: Mapping[Key, Obj],
    endpoints: Mapping[Key, Obj],
    apisix_upstreams: Mapping[Key, Obj],
    pods: Mapping[Key, Mapping[str, str]],
    path: str,
    warnings: list[str],
) -> tuple[upstreams.Upstream, tuple[upstreams.WeightedUpstream, ...]]:
    """The route's upstream and traffic-split's weighted upstreams, as the controller builds
    them from ``backends[]`` and ``upstreams[]``:

    * backends only: the first backend is the route's upstream; with more, the others then the
      first's weight (weight-only entry) are the weighted upstreams;
    * upstreams only: the first ApisixUpstream is the route's upstream (one the controller
      cannot translate leaves the route pointing at an upstream APISIX does not have, which
      its Admin API refuses: the rule is left out); with more, the first's weight (weight-only
      entry) then the others;
    * both: the backends' entries (just the first's weight with one backend), then every
      ApisixUpstream.

    An ``upstreams[]`` entry after the route's own that cannot be translated is skipped, as the
    controller skips it, and reported in ``warnings``.
    """
    backends = rule.get("backends") or []
    refs = rule.get("upstreams") or []
    if not backends and not refs:
        raise upstreams.TranslationError(
            f"Expected at least one backend or upstream - at {path}.backends"
        )
    ups = [
        (
            upstreams.translate_backend(
                namespace,
                b,
                services,
                endpoints,
                f"{path}.backends[{i}]",
                apisix_upstreams,
                pods,
            ),
            weight(b, f"{path}.backends[{i}]"),
        )
        for i, b in enumerate(backends)
    ]
    externals: list[tuple[upstreams.Upstream, int]] = []
    for i, ref in enumerate(refs):
        at = f"{path}.upstreams[{i}]"
        name = ref.get("name") or "" if isinstance(ref, Mapping) else ""
        try:
            if not name:
                raise upstreams.ExternalUpstreamError(
                    f"Expected an ApisixUpstream name - at {at}.name"
                )
            up = upstreams.translate_external(namespace, name, apisix_upstreams, services, at)
            externals.append((up, weight(ref, at)))
        except upstreams.TranslationError as e:
            if not backends and i == 0:
                raise upstreams.TranslationError(
                    f"{e}; the route's upstream {upstreams.compose_external_upstream_name(namespace, name)}"
                    " does not exist in APISIX"
                ) from e
            warnings.append(f"{e} (skipped)")
    if ups:
        own, own_weight = ups[0]
        weighted = [upstreams.WeightedUpstream(u, w) for u, w in ups[1:]]
        if len(ups) > 1 or externals:
            weighted.append(upstreams.WeightedUpstream(own, own_weight))
        weighted += [upstreams.WeightedUpstream(u, w) for u, w in externals]
        return own, tuple(weighted)
    own, own_weight = externals[0]
    if len(externals) == 1:
        return own, ()
    return own, (
        upstreams.WeightedUpstream(own, own_weight),
        *(upstreams.WeightedUpstream(u, w) for u, w in externals[1:]),
    )


def weight(backend: Obj, path: str) -> int:
    weight = backend.get("weight")
    if weight is None:
        return upstreams.DEFAULT_WEIGHT
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        raise upstreams.TranslationError(
            f"Expected a non-negative int, got {weight!r} - at {path}.weight"
        )
    return weight

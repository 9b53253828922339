"""Validation of Flagger (and ApisixRoute) documents, reporting *every* problem.

Three passes per document: a structural walk against the model (unknown fields, types,
required fields, enums, patterns), a msgspec decode of what survived, and the semantic rules
Flagger only discovers at runtime. Cross-document rules (templateRef, providerRef, routeRef)
apply when the referenced kind is present in the same set of documents and namespace; a
reference to an object absent from the set is assumed to live in the cluster.

Problem lines read ``podinfo (Canary, test): spec.analysis.interval: expected ..., got "10"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from libs.errors import InvalidInput
from libs.model import (
    alerts,
    analysis,
    apisixroute,
    canary,
    extensions,
    standalone,
    structural,
    templates,
)
from libs.model.documents import Document

FLAGGER_API_VERSION = "flagger.app/v1beta1"
FLAGGER_GROUP = "flagger.app"

#: Kinds validated, by kind, with the apiVersion group they must belong to.
MODELS: dict[str, tuple[str, type]] = {
    canary.KIND: (FLAGGER_GROUP, canary.Canary),
    templates.KIND: (FLAGGER_GROUP, templates.MetricTemplate),
    alerts.KIND: (FLAGGER_GROUP, alerts.AlertProvider),
    apisixroute.KIND: ("apisix.apache.org", apisixroute.ApisixRoute),
    standalone.KIND: (standalone.API_GROUP, standalone.ApisixCanary),
}
EXPECTED_API_VERSION = {
    canary.KIND: FLAGGER_API_VERSION,
    templates.KIND: FLAGGER_API_VERSION,
    alerts.KIND: FLAGGER_API_VERSION,
    apisixroute.KIND: apisixroute.API_VERSION,
    standalone.KIND: standalone.API_VERSION,
}
UNSUPPORTED_ON_APISIX = "APISIX routing in Sluice does not support {} yet"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of one document."""

    document: str
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.document}: {self.path}: {self.message}"
        return f"{self.document}: {self.message}"


def is_checked(doc: Document) -> bool:
    """Whether ``validate`` checks this document (Flagger kinds and ApisixRoute).

    Documents that are not objects, or have no kind, are checked (and reported); a known kind
    of another API group (an Argo ``Canary``?) is not Sluice's business and is skipped.
    """
    if not isinstance(doc.data, dict) or doc.kind is None:
        return True
    if doc.kind not in MODELS:
        return False
    if doc.api_version is None:
        return True  # reported as a missing apiVersion
    return doc.api_version.split("/")[0] == MODELS[doc.kind][0]


@dataclass
class _Checked:
    doc: Document
    issues: list[structural.Issue] = field(default_factory=list)
    obj: Any = None


@dataclass
class _Index:
    """What the document set holds, by (namespace, name), and which namespaces hold a kind."""

    objects: dict[str, dict[tuple[str, str], Any]] = field(default_factory=dict)
    namespaces: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, namespace: str | None, name: str | None, obj: Any) -> None:
        self.namespaces.setdefault(kind, set()).add(namespace or "")
        if name:
            self.objects.setdefault(kind, {})[(namespace or "", name)] = obj

    def lookup(self, kind: str, namespace: str | None, name: str) -> tuple[bool, Any]:
        """``(known, obj)``: known is False when the set says nothing about that namespace."""
        ns = namespace or ""
        if ns not in self.namespaces.get(kind, set()):
            return False, None
        return True, self.objects.get(kind, {}).get((ns, name))


def validate(docs: Sequence[Document]) -> list[Problem]:
    """Every problem of every checked document, in document order."""
    checked = [_check_structure(doc) for doc in docs if is_checked(doc)]
    index = _Index()
    for item in checked:
        if isinstance(item.doc.data, dict) and item.doc.kind in MODELS:
            index.add(item.doc.kind, item.doc.namespace, item.doc.name, item.obj)
    problems: list[Problem] = []
    for item in checked:
        label = item.doc.label
        problems.extend(Problem(label, issue.path, issue.message) for issue in item.issues)
        if item.obj is None:
            continue
        structural_paths = [issue.path for issue in item.issues]
        for path, message in _semantic(item.obj, index):
            if not _covered(path, structural_paths):
                problems.append(Problem(label, path, message))
    return problems


def parse_one(obj: dict[str, Any], model: type[T]) -> T:
    """Validate one object of ``model``'s kind and decode it; ``InvalidInput`` lists all problems."""
    kind = next(k for k, (_, m) in MODELS.items() if m is model)
    doc = Document(source="<object>", line=1, data=obj)
    problems: list[Problem] = []
    if isinstance(obj, dict) and obj.get("kind") != kind:
        message = f"expected {structural.show(kind)}, got {structural.show(obj.get('kind'))}"
        raise InvalidInput(str(Problem(doc.label, "kind", message)), path="kind", expected=message)
    item = _check_structure(doc, kind)
    problems.extend(Problem(doc.label, i.path, i.message) for i in item.issues)
    if item.obj is not None:
        index = _Index()
        paths = [i.path for i in item.issues]
        problems.extend(
            Problem(doc.label, path, message)
            for path, message in _semantic(item.obj, index)
            if not _covered(path, paths)
        )
    if problems or item.obj is None:
        first = problems[0] if problems else Problem(doc.label, "", "invalid object")
        raise InvalidInput(
            "\n".join(str(p) for p in problems) or str(first),
            path=first.path,
            expected=first.message,
        )
    result: T = item.obj
    return result


# --- structure -------------------------------------------------------------------------------


def _check_structure(doc: Document, kind: str | None = None) -> _Checked:
    item = _Checked(doc)
    data = doc.data
    if not isinstance(data, dict):
        item.issues.append(
            structural.Issue(
                "", f"expected a Kubernetes object (a mapping), got {structural.show(data)}"
            )
        )
        return item
    kind = kind or doc.kind
    if kind is None:
        item.issues.append(structural.Issue("kind", "required field missing"))
        return item
    model = MODELS[kind][1]
    expected_version = EXPECTED_API_VERSION[kind]
    if "apiVersion" in data and data["apiVersion"] != expected_version:
        item.issues.append(
            structural.Issue(
                "apiVersion",
                f"expected {structural.show(expected_version)}, got {structural.show(data['apiVersion'])}",
            )
        )
    issues, cleaned = structural.check(data, model)
    item.issues.extend(issues)
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and not metadata.get("name") and not metadata.get("generateName"):
        item.issues.append(structural.Issue("metadata.name", "required field missing"))
    if cleaned is None:
        return item
    try:
        item.obj = structural.decode(cleaned, model)
    except msgspec.ValidationError as exc:
        if not item.issues:  # the walk missed something msgspec caught: report it as is
            item.issues.append(structural.Issue("", str(exc)))
    return item


def _covered(path: str, structural_paths: list[str]) -> bool:
    """A semantic problem is noise when the structural pass already reported at or under it."""
    return any(
        s == path or s.startswith(path + ".") or s.startswith(path + "[") for s in structural_paths
    )


# --- semantic rules --------------------------------------------------------------------------


def _semantic(obj: Any, index: _Index) -> Iterator[tuple[str, str]]:
    if isinstance(obj, canary.Canary):
        yield from _canary_rules(obj, index)
    elif isinstance(obj, templates.MetricTemplate):
        yield from _template_rules(obj)
    elif isinstance(obj, alerts.AlertProvider):
        yield from _provider_rules(obj)
    elif isinstance(obj, apisixroute.ApisixRoute):
        yield from _route_rules(obj)
    elif isinstance(obj, standalone.ApisixCanary):
        yield from _apisix_canary_rules(obj, index)


def _apisix_canary_rules(c: standalone.ApisixCanary, index: _Index) -> Iterator[tuple[str, str]]:
    """A standalone canary: its upstreams, and the analysis rules of a Flagger Canary."""
    yield from standalone.problems(c)
    if c.spec.analysis is None:
        yield "spec.analysis", "required field missing"
        return
    namespace = c.metadata.namespace or standalone.DEFAULT_NAMESPACE
    yield from _analysis_rules(c.spec.analysis, "spec.analysis")
    yield from _metric_rules(c.spec.analysis, "spec.analysis", namespace, index)


def _canary_rules(c: canary.Canary, index: _Index) -> Iterator[tuple[str, str]]:
    spec = c.spec
    namespace = c.metadata.namespace
    if spec.analysis is None and spec.canary_analysis is None:
        yield "spec.analysis", "required field missing"
        return
    if spec.analysis is not None and spec.canary_analysis is not None:
        yield (
            "spec.canaryAnalysis",
            "expected only one of analysis and canaryAnalysis (deprecated), got both",
        )
    base = "spec.analysis" if spec.analysis is not None else "spec.canaryAnalysis"
    a = c.get_analysis()
    yield from _analysis_rules(a, base)
    yield from _metric_rules(a, base, namespace, index)
    for i, alert in enumerate(a.alerts):
        ref = alert.provider_ref
        known, found = index.lookup(alerts.KIND, ref.namespace_or(namespace), ref.name)
        if known and found is None:
            yield (
                f"{base}.alerts[{i}].providerRef.name",
                f"expected the name of an AlertProvider in namespace {ref.namespace_or(namespace) or '<unset>'}, got {structural.show(ref.name)}",
            )
    replicas = spec.autoscaler_ref.primary_scaler_replicas if spec.autoscaler_ref else None
    if (
        replicas
        and replicas.min_replicas
        and replicas.max_replicas
        and replicas.min_replicas > replicas.max_replicas
    ):
        yield (
            "spec.autoscalerRef.primaryScalerReplicas",
            f"expected minReplicas <= maxReplicas, got {structural.show(msgspec.to_builtins(replicas))}",
        )
    if spec.autoscaler_ref is not None:
        yield from _autoscaler_rules(spec.autoscaler_ref)
    yield from _derived_name_rules(c)
    if c.provider() == "apisix":
        yield from _apisix_rules(c, a, base, index)


# Sluice creates ``<target>-primary`` (Deployment, its ``app`` label) and ``<service>-primary``
# / ``-canary`` (Services): each must stay a DNS label and a label value, 63 characters at most.
MAX_LABEL_CHARS = 63
LONGEST_SUFFIX = "-primary"


def _derived_name_rules(c: canary.Canary) -> Iterator[tuple[str, str]]:
    limit = MAX_LABEL_CHARS - len(LONGEST_SUFFIX)
    for path, name in (
        ("spec.targetRef.name", c.spec.target_ref.name),
        ("spec.service.name", c.spec.service.name),
    ):
        if name and len(name) > limit:
            yield (
                path,
                f"expected at most {limit} characters (the {name[:8]}…{LONGEST_SUFFIX} "
                f"Deployment and Services Sluice creates need {MAX_LABEL_CHARS} at most), "
                f"got {len(name)}",
            )


def _autoscaler_rules(ref: canary.AutoscalerRef) -> Iterator[tuple[str, str]]:
    """An HPA (any ``autoscaling/*`` version: an HPA is one object served at each, and Flagger
    reads ``autoscaling/v2`` whatever the ref says); KEDA ScaledObjects are not supported."""
    if ref.kind == "ScaledObject":
        yield (
            "spec.autoscalerRef.kind",
            f"expected HorizontalPodAutoscaler, got {structural.show(ref.kind)} (KEDA "
            "ScaledObjects are not supported by Sluice)",
        )
    elif ref.api_version.partition("/")[0] != "autoscaling":
        yield (
            "spec.autoscalerRef.apiVersion",
            f"expected autoscaling/v2 for a HorizontalPodAutoscaler, got {structural.show(ref.api_version)}",
        )


def _analysis_rules(a: analysis.CanaryAnalysis, base: str) -> Iterator[tuple[str, str]]:
    if a.interval is None:
        yield f"{base}.interval", "required field missing"
    if a.threshold is None:
        yield f"{base}.threshold", "required field missing"
    present = [
        name
        for name, value in (
            ("iterations", a.iterations),
            ("stepWeight", a.step_weight),
            ("stepWeights", a.step_weights),
        )
        if value is not None
    ]
    if not present:
        yield base, "expected one of iterations, stepWeight or stepWeights, got none"
    elif len(present) > 1:
        yield (
            base,
            f"expected only one of iterations, stepWeight or stepWeights, got {' and '.join(present)}",
        )
    if a.step_weights is not None:
        if not a.step_weights:
            yield f"{base}.stepWeights", "expected at least one weight, got []"
        for i in range(1, len(a.step_weights)):
            previous, current = a.step_weights[i - 1], a.step_weights[i]
            if current <= previous:
                yield (
                    f"{base}.stepWeights[{i}]",
                    f"expected a weight greater than the previous step ({previous}), got {current}",
                )


def _metric_rules(
    a: analysis.CanaryAnalysis, base: str, namespace: str | None, index: _Index
) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for i, metric in enumerate(a.metrics):
        path = f"{base}.metrics[{i}]"
        if metric.name in seen:
            yield (
                f"{path}.name",
                f"expected a unique metric name, got {structural.show(metric.name)} twice",
            )
        seen.add(metric.name)
        if metric.threshold is None and metric.threshold_range is None:
            yield path, "expected thresholdRange or threshold, got neither"
        rng = metric.threshold_range
        if rng is not None:
            if rng.min is None and rng.max is None:
                yield f"{path}.thresholdRange", "expected min or max, got {}"
            elif rng.min is not None and rng.max is not None and rng.min > rng.max:
                yield (
                    f"{path}.thresholdRange",
                    f"expected min <= max, got {structural.show(msgspec.to_builtins(rng))}",
                )
        if metric.template_ref is not None and metric.query:
            yield path, "expected only one of templateRef and query, got both"
        if (
            metric.template_ref is None
            and not metric.query
            and metric.name not in analysis.BUILTIN_METRICS
        ):
            yield (
                f"{path}.name",
                "expected a builtin metric (request-success-rate or request-duration) "
                f"or a templateRef or query, got {structural.show(metric.name)}",
            )
        yield from extensions.problems(metric, path)  # sluice.* keys (dry-run, relative)
        if metric.template_ref is None and not extensions.only_extensions(
            metric.template_variables
        ):
            yield (
                f"{path}.templateVariables",
                "expected templateRef to be set when templateVariables are given, got no templateRef",
            )
        if metric.query:
            for name in templates.unknown_placeholders(metric.query):
                yield f"{path}.query", _unknown_variable(name)
        ref = metric.template_ref
        if ref is None:
            continue
        ref_ns = ref.namespace_or(namespace)
        known, template = index.lookup(templates.KIND, ref_ns, ref.name)
        if known and template is None:
            yield (
                f"{path}.templateRef.name",
                f"expected the name of a MetricTemplate in namespace {ref_ns or '<unset>'}, got {structural.show(ref.name)}",
            )
        if isinstance(template, templates.MetricTemplate):
            for key in templates.template_variables(template.spec.query):
                if key not in metric.template_variables:
                    yield (
                        f"{path}.templateVariables",
                        f"expected key {structural.show(key)} used by MetricTemplate {structural.show(ref.name)}, "
                        f"got {structural.show(metric.template_variables)}",
                    )


def _unknown_variable(name: str) -> str:
    known = ", ".join([*templates.CANARY_VARIABLES, "variables.<key>"])
    return f"expected template variables among {known}, got {structural.show('{{ ' + name + ' }}')}"


def _apisix_rules(
    c: canary.Canary, a: analysis.CanaryAnalysis, base: str, index: _Index
) -> Iterator[tuple[str, str]]:
    route_ref = c.spec.route_ref
    if route_ref is None:
        yield (
            "spec.routeRef",
            "required field missing (provider apisix needs the ApisixRoute to copy)",
        )
    else:
        known, route = index.lookup(apisixroute.KIND, c.metadata.namespace, route_ref.name)
        if known and route is None:
            yield (
                "spec.routeRef.name",
                f"expected the name of an ApisixRoute in namespace {c.metadata.namespace or '<unset>'}, got {structural.show(route_ref.name)}",
            )
        if (
            isinstance(route, apisixroute.ApisixRoute)
            and route.canary_rule(c.service_name()) is None
        ):
            yield (
                "spec.routeRef.name",
                f"expected ApisixRoute {structural.show(route_ref.name)} to have an http rule whose only backend is "
                f"service {structural.show(c.service_name())}, got none",
            )
    # mirror (proxy-mirror to the canary) is for blue/green and canary; mirrorWeight's 0..100
    # is the schema's. Flagger ignores mirror for A/B testing: say so rather than ignore it.
    if a.mirror and a.match:
        yield (
            f"{base}.mirror",
            "expected mirror without match: traffic mirroring is for blue/green (iterations) "
            "and canary (stepWeight/stepWeights) analyses, A/B testing (match) does not mirror",
        )
    if a.session_affinity is not None:
        yield (
            f"{base}.sessionAffinity",
            "APISIX cannot do session affinity: it cannot add a Set-Cookie header only to the "
            "responses of one backend of a weighted split (plugins apply to the whole route), so "
            "a cookie cannot pin a user to the canary after their first canary response; use A/B "
            "testing with a cookie header match instead (iterations and "
            'match: [{headers: {cookie: {regex: "^(.*?;)?(canary=always)(;.*)?$"}}}])',
        )
    for i, entry in enumerate(a.match):
        path = f"{base}.match[{i}]"
        if entry.source_labels:
            yield f"{path}.sourceLabels", UNSUPPORTED_ON_APISIX.format("sourceLabels (mesh-only)")
        if not entry.headers and not entry.query_params and not entry.source_labels:
            yield path, "expected headers or queryParams, got {}"
        for group, conditions in (("headers", entry.headers), ("queryParams", entry.query_params)):
            for key, condition in conditions.items():
                if len(condition.operators()) != 1:
                    yield (
                        structural.join(f"{path}.{group}", key),
                        "expected exactly one of exact, prefix, suffix, regex, got "
                        + structural.show(msgspec.to_builtins(condition)),
                    )


def _template_rules(t: templates.MetricTemplate) -> Iterator[tuple[str, str]]:
    for name in templates.unknown_placeholders(t.spec.query):
        yield "spec.query", _unknown_variable(name)
    address = t.spec.provider.address
    if t.spec.provider.type == "prometheus" and address and not structural.is_http_url(address):
        yield (
            "spec.provider.address",
            f"expected an absolute http or https URL, got {structural.show(address)}",
        )


def _provider_rules(p: alerts.AlertProvider) -> Iterator[tuple[str, str]]:
    if not p.spec.address and p.spec.secret_ref is None:
        yield "spec", "expected address or secretRef, got neither"


def _route_rules(r: apisixroute.ApisixRoute) -> Iterator[tuple[str, str]]:
    if not r.spec.http and not r.spec.stream:
        yield "spec", "expected http or stream rules, got neither"
    names: set[str] = set()
    for i, rule in enumerate(r.spec.http):
        if rule.name in names:
            yield (
                f"spec.http[{i}].name",
                f"expected a unique rule name, got {structural.show(rule.name)} twice",
            )
        names.add(rule.name)
        if not rule.backends and not rule.upstreams:
            yield f"spec.http[{i}]", "expected backends or upstreams, got neither"
        for j, expr in enumerate(rule.match.exprs):
            if (expr.value is None) == (expr.set is None):
                yield f"spec.http[{i}].match.exprs[{j}]", "expected exactly one of value and set"
            if expr.subject.scope != "Path" and not expr.subject.name:
                yield f"spec.http[{i}].match.exprs[{j}].subject.name", "required field missing"

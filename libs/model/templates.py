"""The ``flagger.app/v1beta1`` MetricTemplate and its query-template variables.

A query names variables as ``{{ name }}``, ``{{ namespace }}``, ``{{ target }}``,
``{{ service }}``, ``{{ ingress }}``, ``{{ route }}``, ``{{ interval }}`` and
``{{ variables.<key> }}`` (from the Canary metric's ``templateVariables``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from libs.errors import InvalidInput
from libs.model import meta

API_VERSION = "flagger.app/v1beta1"
KIND = "MetricTemplate"

#: Variables every query may use, filled from the Canary.
CANARY_VARIABLES: tuple[str, ...] = (
    "name",
    "namespace",
    "target",
    "service",
    "ingress",
    "route",
    "interval",
)
VARIABLES_PREFIX = "variables."

ProviderType = Literal[
    "prometheus",
    "influxdb",
    "datadog",
    "externalmetrics",
    "stackdriver",
    "cloudwatch",
    "newrelic",
    "graphite",
    "dynatrace",
    "keptn",
    "splunk",
]

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


class MetricProvider(meta.Model, frozen=True):
    """Where a template's query runs. Prometheus secret keys: ``token`` or ``username``+``password``."""

    type: ProviderType
    address: str | None = None
    headers: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    secret_ref: meta.LocalObjectReference | None = None
    region: str | None = None
    insecure_skip_verify: bool = False


class MetricTemplateSpec(meta.Model, frozen=True):
    """``spec`` of a MetricTemplate."""

    provider: MetricProvider
    query: str


class MetricTemplate(meta.Object, frozen=True):
    """A Flagger MetricTemplate object."""

    spec: MetricTemplateSpec
    status: dict[str, Any] | None = None


# Flagger's builtin APISIX checks (pkg/metrics/observers/apisix.go), as query templates. The
# route label is "<namespace>_<apisixroute>_<rule>" (prefer_name), the generated canary route is
# "<route>-<target>-canary"; latencies are in milliseconds.
APISIX_BUILTIN_QUERIES: dict[str, str] = {
    "request-success-rate": (
        'sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+",'
        'code!~"5.."}[{{ interval }}])) / sum(rate(apisix_http_status{route=~"{{ namespace }}_'
        '{{ route }}-{{ target }}-canary_.+"}[{{ interval }}])) * 100'
    ),
    "request-duration": (
        'histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=~"request",'
        'route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"}[{{ interval }}])) by (le))'
    ),
}


# Standalone mode (an ApisixCanary on the user's own route): the canary's share of the route is
# told apart by the upstream node that served it. ``route`` is the route id (the label the
# prometheus plugin exports unless the route sets prefer_name), ``nodes`` a regex matching the
# canary upstream's nodes (host:port).
APISIX_STANDALONE_QUERIES: dict[str, str] = {
    "request-success-rate": (
        'sum(rate(apisix_http_status{route="{{ route }}",node=~"{{ nodes }}",code!~"5.."}'
        '[{{ interval }}])) / sum(rate(apisix_http_status{route="{{ route }}",'
        'node=~"{{ nodes }}"}[{{ interval }}])) * 100'
    ),
    "request-duration": (
        'histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type="request",'
        'route="{{ route }}",node=~"{{ nodes }}"}[{{ interval }}])) by (le))'
    ),
}


def placeholders(query: str) -> list[str]:
    """Every ``{{ ... }}`` placeholder of a query, stripped, in order of appearance."""
    return _PLACEHOLDER.findall(query)


def unknown_placeholders(query: str) -> list[str]:
    """Placeholders that are neither canary variables nor ``variables.<key>``."""
    return [
        name
        for name in placeholders(query)
        if name not in CANARY_VARIABLES
        and not (name.startswith(VARIABLES_PREFIX) and len(name) > len(VARIABLES_PREFIX))
    ]


def template_variables(query: str) -> list[str]:
    """Keys the query reads from ``templateVariables`` (``{{ variables.<key> }}``), deduplicated."""
    keys: list[str] = []
    for name in placeholders(query):
        if name.startswith(VARIABLES_PREFIX):
            key = name[len(VARIABLES_PREFIX) :]
            if key and key not in keys:
                keys.append(key)
    return keys


def render_query(
    query: str, canary_vars: Mapping[str, str], variables: Mapping[str, str] | None = None
) -> str:
    """Fill a query template; a missing variable raises ``InvalidInput`` naming it."""
    variables = variables or {}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith(VARIABLES_PREFIX):
            key = name[len(VARIABLES_PREFIX) :]
            if key not in variables:
                raise InvalidInput(
                    f"templateVariables: expected key {key!r} used by the query, got none",
                    path="templateVariables",
                    expected=key,
                )
            return variables[key]
        if name not in canary_vars:
            raise InvalidInput(
                f"query: unknown template variable {name!r}", path="query", expected=name
            )
        return canary_vars[name]

    return _PLACEHOLDER.sub(fill, query)


def parse_metric_template(obj: dict[str, Any]) -> MetricTemplate:
    """Validate and decode one MetricTemplate; ``InvalidInput`` lists every problem."""
    from libs.model import validation

    return validation.parse_one(obj, MetricTemplate)

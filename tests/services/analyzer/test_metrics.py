"""The analyzer's metric checks — pure: queries rendered, values judged, Flagger's messages
character for character (pkg/controller/scheduler_metrics.go), Go's number and duration
formatting. No server."""

from __future__ import annotations

import copy
import math
import pathlib
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from libs import errors, messages
from libs.model import analysis, templates
from libs.model import canary as canary_model
from services.analyzer import metrics

SEED = pathlib.Path(__file__).resolve().parents[2] / "data" / "manifests" / "podinfo-canary.yaml"
SEED_OBJ: dict[str, Any] = yaml.safe_load(SEED.read_text())

SUCCESS_RATE_1M = (
    'sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",code!~"5.."}[1m])) / '
    'sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100'
)
DURATION_30S = (
    'histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=~"request",'
    'route=~"test_podinfo-podinfo-canary_.+"}[30s])) by (le))'
)


def canary(**changes: Any) -> canary_model.Canary:
    """The seed canary (podinfo in test), with ``changes`` merged into its object: a key
    ``metadata.name`` or ``spec.targetRef.name`` sets that path (``None`` deletes it)."""
    obj = copy.deepcopy(SEED_OBJ)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = obj
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    # not parse_canary: some cases are canaries Sluice's validation would refuse
    return msgspec.convert(obj, canary_model.Canary)


SEED_CANARY = canary()


def metric(**fields: Any) -> analysis.Metric:
    return msgspec.convert({"name": "error-rate", **fields}, analysis.Metric)


def template(query: str, provider: str = "prometheus") -> templates.MetricTemplate:
    return msgspec.convert(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "error-rate", "namespace": "test"},
            "spec": {"provider": {"type": provider, "address": "http://p:9090"}, "query": query},
        },
        templates.MetricTemplate,
    )


def seed_metric(name: str) -> analysis.Metric:
    return next(m for m in SEED_CANARY.get_analysis().metrics if m.name == name)


# --------------------------------------------------------------------------- queries


def test_the_seed_builtin_queries_are_flaggers_apisix_queries() -> None:
    rate = metrics.render(SEED_CANARY, seed_metric("request-success-rate"))
    assert rate == metrics.Query(
        "request-success-rate", metrics.Kind.BUILTIN, "apisix", SUCCESS_RATE_1M
    )
    duration = metrics.render(SEED_CANARY, seed_metric("request-duration"))
    assert duration == metrics.Query(
        "request-duration", metrics.Kind.BUILTIN, "apisix", DURATION_30S
    )


def test_a_builtin_metric_without_interval_uses_1m() -> None:
    query = metrics.render(SEED_CANARY, metric(name="request-duration", thresholdRange={"max": 1}))
    assert "[1m]" in query.promql


def test_every_template_variable() -> None:
    subject = canary(
        **{
            "metadata.name": "web-canary",
            "metadata.namespace": "prod",
            "spec.targetRef.name": "web",
            "spec.service.name": "web-svc",
            "spec.routeRef.name": "web-route",
            "spec.ingressRef": {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "name": "web-ing",
            },
        }
    )
    tpl = template(
        "{{ name }}|{{ namespace }}|{{ target }}|{{ service }}|{{ ingress }}|{{ route }}|"
        "{{ interval }}|{{variables.team}}|{{ variables.team }}"
    )
    m = metric(templateRef={"name": "error-rate"}, interval="5m", templateVariables={"team": "a"})
    query = metrics.render(subject, m, tpl)
    assert query == metrics.Query(
        "error-rate",
        metrics.Kind.TEMPLATE,
        "prometheus",
        "web-canary|prod|web|web-svc|web-ing|web-route|5m|a|a",
    )
    assert metrics.template_key(subject, m) == ("prod", "error-rate")
    # defaults: service, ingress and route fall back to the target; interval to 1m
    bare = canary(
        **{"spec.targetRef.name": "web", "spec.routeRef": None, "spec.service.name": None}
    )
    defaults = metrics.render(
        bare, metric(templateRef={"name": "error-rate"}, templateVariables={"team": "b"}), tpl
    )
    assert defaults.promql.startswith("podinfo|test|web|web|web|web|1m|")


def test_the_builtin_queries_follow_the_route_and_the_target() -> None:
    subject = canary(
        **{
            "metadata.namespace": "shop",
            "spec.targetRef.name": "cart",
            "spec.routeRef.name": "storefront",
        }
    )
    query = metrics.render(subject, seed_metric("request-success-rate"))
    assert query.promql == SUCCESS_RATE_1M.replace(
        "test_podinfo-podinfo-canary", "shop_storefront-cart-canary"
    )


def test_template_variables_from_another_namespace_and_the_provider_type() -> None:
    m = metric(templateRef={"name": "latency", "namespace": "monitoring"})
    assert metrics.template_key(SEED_CANARY, m) == ("monitoring", "latency")
    assert metrics.template_key(SEED_CANARY, metric(query="up")) is None
    query = metrics.render(SEED_CANARY, m, template("avg(x)", provider="datadog"))
    assert (query.kind, query.provider, query.promql) == (
        metrics.Kind.TEMPLATE,
        "datadog",
        "avg(x)",
    )


def test_an_inline_query_is_rendered_with_the_same_variables() -> None:
    m = metric(name="my-inline", query='sum(x{ns="{{ namespace }}"}[{{ interval }}])')
    assert metrics.render(SEED_CANARY, m) == metrics.Query(
        "my-inline", metrics.Kind.INLINE, "prometheus", 'sum(x{ns="test"}[1m])'
    )


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"name": "request-success-rate"}, metrics.Kind.BUILTIN),
        ({"name": "request-duration"}, metrics.Kind.BUILTIN),
        ({"name": "request-success-rate", "templateRef": {"name": "t"}}, metrics.Kind.TEMPLATE),
        ({"name": "request-duration", "query": "up"}, metrics.Kind.INLINE),
        ({"name": "x", "templateRef": {"name": "t"}, "query": "up"}, metrics.Kind.TEMPLATE),
        ({"name": "x", "query": "up"}, metrics.Kind.INLINE),
        ({"name": "x"}, None),
        ({"name": "x", "query": ""}, None),
    ],
)
def test_kind_of(fields: dict[str, Any], kind: metrics.Kind | None) -> None:
    assert metrics.kind_of(msgspec.convert(fields, analysis.Metric)) is kind


def test_what_cannot_be_rendered() -> None:
    m = metric(templateRef={"name": "error-rate"})
    with pytest.raises(metrics.MissingTemplate, match=r'metrictemplate\.flagger\.app "error-rate"'):
        metrics.render(SEED_CANARY, m)
    with pytest.raises(metrics.RenderError, match="expected key 'team'") as caught:
        metrics.render(SEED_CANARY, m, template("x{t='{{ variables.team }}'}"))
    assert isinstance(caught.value, errors.InvalidInput)
    with pytest.raises(errors.Unsupported, match=r"provider apisix only.*istio"):
        metrics.render(canary(**{"spec.provider": "istio"}), seed_metric("request-duration"))
    with pytest.raises(errors.InvalidInput, match="no usable metrics template and query"):
        metrics.render(SEED_CANARY, metric())


def test_the_default_provider_is_apisix() -> None:
    query = metrics.render(canary(**{"spec.provider": None}), seed_metric("request-duration"))
    assert query.provider == "apisix"
    service_target = canary(**{"spec.targetRef.kind": "Service"})
    assert metrics.render(service_target, seed_metric("request-duration")).provider == (
        "apisix:service"
    )


# --------------------------------------------------------------------------- evaluate

RATE_MIN_99 = {"name": "request-success-rate", "thresholdRange": {"min": 99}}
DURATION_MAX_500 = {"name": "request-duration", "thresholdRange": {"max": 500}}
CUSTOM = {"name": "error-rate", "templateRef": {"name": "error-rate"}}

EVALUATIONS: list[tuple[dict[str, Any], float, str]] = [
    # --- request-success-rate: %.2f%% against %v%%
    (RATE_MIN_99, 99.0, ""),
    (RATE_MIN_99, 100.0, ""),
    (RATE_MIN_99, 97.1, "Halt podinfo.test advancement success rate 97.10% < 99%"),
    (RATE_MIN_99, 98.999, "Halt podinfo.test advancement success rate 99.00% < 99%"),
    (RATE_MIN_99, 0.0, "Halt podinfo.test advancement success rate 0.00% < 99%"),
    (
        {"name": "request-success-rate", "thresholdRange": {"min": 99.5}},
        99.25,
        "Halt podinfo.test advancement success rate 99.25% < 99.5%",
    ),
    (
        {"name": "request-success-rate", "thresholdRange": {"min": 90, "max": 95}},
        96.0,
        "Halt podinfo.test advancement success rate 96.00% > 95%",
    ),
    (
        {"name": "request-success-rate", "thresholdRange": {"min": 90, "max": 95}},
        80.0,
        "Halt podinfo.test advancement success rate 80.00% < 90%",
    ),
    # the deprecated threshold is a minimum for the success rate
    (
        {"name": "request-success-rate", "threshold": 99},
        98.0,
        "Halt podinfo.test advancement success rate 98.00% < 99%",
    ),
    ({"name": "request-success-rate", "threshold": 99}, 99.5, ""),
    # --- request-duration: milliseconds, truncated, as Go time.Duration strings
    (DURATION_MAX_500, 500.0, ""),
    (DURATION_MAX_500, 500.9, ""),  # int64(500.9) ms = 500ms, not > 500ms
    (DURATION_MAX_500, 99.5, ""),
    (DURATION_MAX_500, 0.0, ""),
    (DURATION_MAX_500, 501.0, "Halt podinfo.test advancement request duration 501ms > 500ms"),
    (DURATION_MAX_500, 1234.5, "Halt podinfo.test advancement request duration 1.234s > 500ms"),
    (DURATION_MAX_500, 2000.0, "Halt podinfo.test advancement request duration 2s > 500ms"),
    (DURATION_MAX_500, 61500.0, "Halt podinfo.test advancement request duration 1m1.5s > 500ms"),
    (DURATION_MAX_500, math.inf, "Halt podinfo.test advancement request duration +Inf > 500ms"),
    (
        {"name": "request-duration", "thresholdRange": {"max": 1500}},
        7_200_000.0,
        "Halt podinfo.test advancement request duration 2h0m0s > 1.5s",
    ),
    (
        {"name": "request-duration", "thresholdRange": {"min": 10, "max": 500}},
        5.5,
        "Halt podinfo.test advancement request duration 5ms < 10ms",
    ),
    ({"name": "request-duration", "thresholdRange": {"max": 0.5}}, 0.9, ""),  # 0ms > 0s? no
    (
        {"name": "request-duration", "thresholdRange": {"max": 0.5}},
        1.0,
        "Halt podinfo.test advancement request duration 1ms > 0s",
    ),
    # the deprecated threshold is a maximum in milliseconds
    (
        {"name": "request-duration", "threshold": 500},
        600.0,
        "Halt podinfo.test advancement request duration 600ms > 500ms",
    ),
    ({"name": "request-duration", "threshold": 500}, 499.0, ""),
    # --- custom metrics (template or inline): %s %.2f against %v
    ({**CUSTOM, "thresholdRange": {"max": 5}}, 5.0, ""),
    (
        {**CUSTOM, "thresholdRange": {"max": 5}},
        7.123,
        "Halt podinfo.test advancement error-rate 7.12 > 5",
    ),
    (
        {**CUSTOM, "thresholdRange": {"min": 1}},
        0.5,
        "Halt podinfo.test advancement error-rate 0.50 < 1",
    ),
    (
        {**CUSTOM, "thresholdRange": {"min": 0.0001}},
        0.0,
        "Halt podinfo.test advancement error-rate 0.00 < 0.0001",
    ),
    (
        {**CUSTOM, "thresholdRange": {"max": 0.00001}},
        1.0,
        "Halt podinfo.test advancement error-rate 1.00 > 1e-05",
    ),
    (
        {**CUSTOM, "thresholdRange": {"max": 1_000_000}},
        2_000_000.0,
        "Halt podinfo.test advancement error-rate 2000000.00 > 1e+06",
    ),
    (
        {**CUSTOM, "thresholdRange": {"max": 2.5}},
        math.inf,
        "Halt podinfo.test advancement error-rate +Inf > 2.5",
    ),
    ({**CUSTOM, "threshold": 5}, 6.0, "Halt podinfo.test advancement error-rate 6.00 > 5"),
    ({**CUSTOM, "threshold": 5}, 4.0, ""),
    (
        {"name": "p95", "query": "up", "thresholdRange": {"max": 300}},
        312.456,
        "Halt podinfo.test advancement p95 312.46 > 300",
    ),
    # a builtin name with a template is a custom metric (its template answers, not APISIX)
    (
        {"name": "request-success-rate", "templateRef": {"name": "t"}, "thresholdRange": {"min": 99}},
        97.0,
        "Halt podinfo.test advancement request-success-rate 97.00 < 99",
    ),
    (
        {"name": "request-duration", "templateRef": {"name": "t"}, "thresholdRange": {"max": 500}},
        600.5,
        "Halt podinfo.test advancement request-duration 600.50 > 500",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "value", "message"), EVALUATIONS)
def test_evaluate(fields: dict[str, Any], value: float, message: str) -> None:
    m = msgspec.convert(fields, analysis.Metric)
    result = metrics.evaluate(SEED_CANARY, m, value)
    bounds = m.effective_range()
    assert result == metrics.Result(
        metric=m.name,
        value=value,
        min=bounds.min,
        max=bounds.max,
        passed=not message,
        message=message,
        severity=analysis.Severity.WARN if message else analysis.Severity.INFO,
    )


def test_halts_name_the_canary_no_values_name_the_target() -> None:
    """As in Flagger: ``Halt <canary>.<ns> ...`` but ``probably <target>.<ns> is not ...``."""
    subject = canary(
        **{
            "metadata.name": "web-canary",
            "metadata.namespace": "prod",
            "spec.targetRef.name": "web",
        }
    )
    m = msgspec.convert(RATE_MIN_99, analysis.Metric)
    assert metrics.evaluate(subject, m, 50.0).message == (
        "Halt web-canary.prod advancement success rate 50.00% < 99%"
    )
    assert metrics.failed(subject, m, errors.NoValuesFound("no values found")).message == (
        "Halt advancement no values found for apisix metric request-success-rate "
        "probably web.prod is not receiving traffic"
    )


def test_a_nan_value_is_no_values_found() -> None:
    m = msgspec.convert(DURATION_MAX_500, analysis.Metric)
    result = metrics.evaluate(SEED_CANARY, m, math.nan)
    assert result.value is None
    assert not result.passed
    assert "no values found for apisix metric request-duration" in result.message


# --------------------------------------------------------------------------- failures

NO_VALUES = errors.NoValuesFound("no values found")
DOWN = errors.Unavailable(
    "prometheus http://p:9090: cannot connect: [Errno 111] Connection refused"
)
SLOW = errors.Timeout("prometheus http://p:9090: no answer within 5s")

FAILURES: list[tuple[dict[str, Any], BaseException, str, analysis.Severity]] = [
    (
        DURATION_MAX_500,
        NO_VALUES,
        "Halt advancement no values found for apisix metric request-duration "
        "probably podinfo.test is not receiving traffic",
        analysis.Severity.WARN,
    ),
    (
        RATE_MIN_99,
        NO_VALUES,
        "Halt advancement no values found for apisix metric request-success-rate "
        "probably podinfo.test is not receiving traffic",
        analysis.Severity.WARN,
    ),
    (RATE_MIN_99, DOWN, f"Prometheus query failed: {DOWN}", analysis.Severity.ERROR),
    (DURATION_MAX_500, SLOW, f"Prometheus query failed: {SLOW}", analysis.Severity.ERROR),
    (
        {**CUSTOM, "threshold": 5},
        NO_VALUES,
        "Halt advancement no values found for custom metric: error-rate: no values found",
        analysis.Severity.WARN,
    ),
    ({**CUSTOM, "threshold": 5}, SLOW, f"Metric query failed for error-rate: {SLOW}",
     analysis.Severity.ERROR),
    (
        {**CUSTOM, "threshold": 5},
        metrics.MissingTemplate('metrictemplate.flagger.app "error-rate" not found'),
        'Metric template error-rate.test error: metrictemplate.flagger.app "error-rate" not found',
        analysis.Severity.ERROR,
    ),
    (
        {"name": "lat", "templateRef": {"name": "lat", "namespace": "monitoring"}, "threshold": 1},
        metrics.RenderError("templateVariables: expected key 'team' used by the query, got none"),
        "Metric template lat.monitoring query render error: "
        "templateVariables: expected key 'team' used by the query, got none",
        analysis.Severity.ERROR,
    ),
    (
        {"name": "my-inline", "query": "up", "threshold": 1},
        NO_VALUES,
        "Halt advancement no values found for metric: my-inline",
        analysis.Severity.WARN,
    ),
    ({"name": "my-inline", "query": "up", "threshold": 1}, DOWN,
     f"Prometheus query failed for my-inline: {DOWN}", analysis.Severity.ERROR),
    ({"name": "nothing", "threshold": 1}, DOWN, metrics.NO_USABLE_QUERY, analysis.Severity.ERROR),
    (
        {"name": "nothing", "threshold": 1},
        errors.InvalidInput("metric nothing: no usable metrics template and query were configured"),
        "Metric query failed for no usable metrics template and query were configured",
        analysis.Severity.ERROR,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "error", "message", "severity"), FAILURES)
def test_failed(
    fields: dict[str, Any], error: BaseException, message: str, severity: analysis.Severity
) -> None:
    m = msgspec.convert(fields, analysis.Metric)
    result = metrics.failed(SEED_CANARY, m, error)
    bounds = m.effective_range()
    assert result == metrics.Result(
        metric=m.name,
        value=None,
        min=bounds.min,
        max=bounds.max,
        passed=False,
        message=message,
        severity=severity,
    )
    assert metrics.check(SEED_CANARY, m, error) == result


def test_a_service_target_is_named_as_flagger_names_it() -> None:
    subject = canary(**{"spec.targetRef.kind": "Service"})
    result = metrics.failed(subject, seed_metric("request-duration"), NO_VALUES)
    assert result.message.startswith("Halt advancement no values found for apisix:service metric")


def test_check_dispatches_and_results_become_events() -> None:
    m = seed_metric("request-success-rate")
    ok = metrics.check(SEED_CANARY, m, 99.9)
    assert ok == metrics.evaluate(SEED_CANARY, m, 99.9)
    assert ok.passed
    event = messages.MetricChecked(
        canary=messages.CanaryRef(namespace="test", name="podinfo"),
        metric=ok.metric,
        value=ok.value,
        min=ok.min,
        max=ok.max,
        passed=ok.passed,
        message=ok.message,
    )
    decoded = messages.EVENT_DECODER.decode(messages.ENCODER.encode(event))
    assert decoded == event


# --------------------------------------------------------------------------- Go formatting


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (99.0, "99"),
        (99.5, "99.5"),
        (0.1, "0.1"),
        (12.0, "12"),
        (100000.0, "100000"),
        (999999.0, "999999"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (1e100, "1e+100"),
        (0.0001, "0.0001"),
        (0.000123, "0.000123"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (0.3333333333333333, "0.3333333333333333"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_go_float_is_go_percent_v(value: float, text: str) -> None:
    assert metrics.go_float(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_go_float_reads_back_exactly(value: float) -> None:
    text = metrics.go_float(value)
    assert float(text) == value
    assert math.copysign(1, float(text)) == math.copysign(1, value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (97.1, "97.10"),
        (98.999, "99.00"),
        (0.125, "0.12"),  # exact halves round to even, as Go's strconv does
        (0.375, "0.38"),
        (2.675, "2.67"),  # 2.67499999... in binary
        (-0.0, "-0.00"),
        (1e21, "1000000000000000000000.00"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_go_fixed2_is_go_percent_point_2f(value: float, text: str) -> None:
    assert metrics.go_fixed2(value) == text


MS = 1_000_000
SECOND = 1_000 * MS
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        # Go's own time.Duration.String() table
        (0, "0s"),
        (1, "1ns"),
        (1_100, "1.1µs"),
        (2_200_000, "2.2ms"),
        (3_300 * MS, "3.3s"),
        (4 * MINUTE + 5 * SECOND, "4m5s"),
        (4 * MINUTE + 5_001 * MS, "4m5.001s"),
        (5 * HOUR + 6 * MINUTE + 7_001 * MS, "5h6m7.001s"),
        (8 * MINUTE + 1, "8m0.000000001s"),
        (2**63 - 1, "2562047h47m16.854775807s"),
        (-(2**63), "-2562047h47m16.854775808s"),
        # and what request-duration messages show
        (-1, "-1ns"),
        (999, "999ns"),
        (500 * MS, "500ms"),
        (1_234 * MS, "1.234s"),
        (MINUTE, "1m0s"),
        (HOUR, "1h0m0s"),
        (-90 * SECOND, "-1m30s"),
    ],
)
def test_go_duration_is_go_duration_string(ns: int, text: str) -> None:
    assert metrics.go_duration(ns) == text


# --------------------------------------------------------------------------- Sluice's extensions

RELATIVE = {
    "name": "error-rate",
    "templateRef": {"name": "error-rate"},
    "thresholdRange": {"max": 1},
    "templateVariables": {
        "sluice.compareTo": "primary",
        "routeLabel": "test_podinfo-podinfo-canary_.+",
        "primary.routeLabel": "test_podinfo_.+",
    },
}


def test_the_primary_side_of_a_relative_check() -> None:
    subject = canary(**{"spec.service.name": "web"})
    tpl = template(
        "{{ target }}|{{ service }}|{{ name }}|{{ route }}|{{ variables.routeLabel }}|{{ interval }}"
    )
    m = msgspec.convert(RELATIVE, analysis.Metric)
    assert metrics.render(subject, m, tpl).promql == (
        "podinfo|web|podinfo|podinfo|test_podinfo-podinfo-canary_.+|1m"
    )
    assert metrics.render(subject, m, tpl, primary=True).promql == (
        "podinfo-primary|web-primary|podinfo|podinfo|test_podinfo_.+|1m"
    )


def test_only_a_template_has_a_primary_side() -> None:
    with pytest.raises(errors.InvalidInput, match=r"sluice\.compareTo needs a templateRef"):
        metrics.render(SEED_CANARY, seed_metric("request-success-rate"), primary=True)


RELATIVE_CHECKS: list[tuple[dict[str, Any], float, float, str]] = [
    (RELATIVE, 1.0, 1.0, ""),
    (RELATIVE, 2.0, 1.0, ""),  # at most the primary's + 1
    (RELATIVE, 0.5, 3.0, ""),  # better than the primary
    (
        RELATIVE,
        4.2,
        1.0,
        "Halt podinfo.test advancement error-rate 3.20 > 1 (canary 4.20, primary 1.00)",
    ),
    (
        {**RELATIVE, "name": "throughput", "thresholdRange": {"min": -10}},
        80.0,
        95.5,
        "Halt podinfo.test advancement throughput -15.50 < -10 (canary 80.00, primary 95.50)",
    ),
    (
        {**RELATIVE, "templateVariables": {**RELATIVE["templateVariables"], "sluice.dryRun": "true"}},
        4.2,
        1.0,
        "Dry-run metric error-rate 3.20 > 1 (canary 4.20, primary 1.00) would have halted "
        "podinfo.test advancement",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "canary_value", "primary_value", "message"), RELATIVE_CHECKS)
def test_check_relative(
    fields: dict[str, Any], canary_value: float, primary_value: float, message: str
) -> None:
    m = msgspec.convert(fields, analysis.Metric)
    result = metrics.check_relative(SEED_CANARY, m, canary_value, primary_value)
    assert result == metrics.Result(
        metric=m.name,
        value=canary_value - primary_value,
        min=m.effective_range().min,
        max=m.effective_range().max,
        passed=not message,
        message=message,
        severity=analysis.Severity.WARN if message else analysis.Severity.INFO,
        dry_run=fields["templateVariables"].get("sluice.dryRun") == "true",
        canary_value=canary_value,
        primary_value=primary_value,
    )
    assert result.halts is (bool(message) and not result.dry_run)


NO_VALUES_ERROR_RATE = (
    "Halt advancement no values found for custom metric: error-rate: no values found"
)


@pytest.mark.parametrize(
    ("canary_outcome", "primary_outcome", "message", "sides"),
    [
        (NO_VALUES, 1.0, NO_VALUES_ERROR_RATE, (None, 1.0)),
        (4.2, NO_VALUES, NO_VALUES_ERROR_RATE, (4.2, None)),
        (NO_VALUES, NO_VALUES, NO_VALUES_ERROR_RATE, (None, None)),
        (math.nan, 1.0, NO_VALUES_ERROR_RATE, (None, 1.0)),
        (4.2, SLOW, f"Metric query failed for error-rate: {SLOW}", (4.2, None)),
        (NO_VALUES, DOWN, f"Metric query failed for error-rate: {DOWN}", (None, None)),
    ],
)
def test_a_relative_check_without_both_values_fails(
    canary_outcome: float | BaseException,
    primary_outcome: float | BaseException,
    message: str,
    sides: tuple[float | None, float | None],
) -> None:
    m = msgspec.convert(RELATIVE, analysis.Metric)
    result = metrics.check_relative(SEED_CANARY, m, canary_outcome, primary_outcome)
    assert (result.passed, result.value, result.message) == (False, None, message)
    assert (result.canary_value, result.primary_value) == sides
    assert result.halts


def dry(fields: dict[str, Any]) -> analysis.Metric:
    variables = {**fields.get("templateVariables", {}), "sluice.dryRun": "true"}
    return msgspec.convert({**fields, "templateVariables": variables}, analysis.Metric)


@pytest.mark.parametrize(
    ("fields", "value", "message"),
    [
        (
            {**CUSTOM, "thresholdRange": {"max": 1}},
            4.2,
            "Dry-run metric error-rate 4.20 > 1 would have halted podinfo.test advancement",
        ),
        (
            RATE_MIN_99,
            97.1,
            "Dry-run metric request-success-rate 97.10% < 99% would have halted "
            "podinfo.test advancement",
        ),
        (
            {"name": "request-duration", "thresholdRange": {"min": 600_000}},
            3.7,
            "Dry-run metric request-duration 3ms < 10m0s would have halted podinfo.test advancement",
        ),
        ({**CUSTOM, "thresholdRange": {"max": 1}}, 0.5, ""),
    ],
)
def test_a_dry_run_metric_never_halts(fields: dict[str, Any], value: float, message: str) -> None:
    m = dry(fields)
    result = metrics.check(SEED_CANARY, m, value)
    assert (result.value, result.passed, result.message, result.dry_run) == (
        value,
        not message,
        message,
        True,
    )
    assert not result.halts
    # the same metric without dryRun halts, with Flagger's message
    plain = msgspec.convert(fields, analysis.Metric)
    assert metrics.check(SEED_CANARY, plain, value).halts is bool(message)


@pytest.mark.parametrize(
    ("fields", "error", "flagger"),
    [
        (
            {**CUSTOM, "thresholdRange": {"max": 1}},
            NO_VALUES,
            "Halt advancement no values found for custom metric: error-rate: no values found",
        ),
        ({**CUSTOM, "thresholdRange": {"max": 1}}, SLOW, f"Metric query failed for error-rate: {SLOW}"),
        (RATE_MIN_99, DOWN, f"Prometheus query failed: {DOWN}"),
    ],
)  # fmt: skip
def test_a_dry_run_metric_only_reports_a_failed_query(
    fields: dict[str, Any], error: BaseException, flagger: str
) -> None:
    result = metrics.check(SEED_CANARY, dry(fields), error)
    assert result.message == (
        f"Dry-run metric {fields['name']} would have halted podinfo.test advancement: {flagger}"
    )
    assert (result.passed, result.dry_run, result.halts) == (False, True, False)
    assert result.severity is analysis.Severity.WARN  # never an error alert

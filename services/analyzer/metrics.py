"""Flagger's metric checks, without I/O: which query to run, and what its answer means.

For one entry of a Canary's ``analysis.metrics`` (and its MetricTemplate, when it has a
``templateRef``):

* ``render(canary, metric, template)`` → ``Query``: the PromQL to run, with Flagger's variables
  (``name``, ``namespace``, ``target``, ``service``, ``ingress``, ``route``, ``interval``,
  ``variables.<key>``). Builtin ``request-success-rate`` / ``request-duration`` use Flagger's APISIX
  queries (pkg/metrics/observers/apisix.go).
* ``evaluate(canary, metric, value)`` → ``Result``: the value against ``thresholdRange`` or the
  deprecated ``threshold`` (a minimum for request-success-rate, a maximum in milliseconds for
  request-duration, a maximum for the rest), with Flagger's halt message on failure.
* ``failed(canary, metric, error)`` → ``Result``: a query that gave no value (no values found,
  Prometheus down, a bad template ...), with Flagger's message for it.

Sluice's extensions (``libs.model.extensions``, keys of ``templateVariables``):

* a dry-run metric (``sluice.dryRun: "true"``) is checked the same way but its result never
  halts: it is marked ``dry_run`` and a failure reads "Dry-run metric <name> <comparison> would
  have halted <canary>.<ns> advancement";
* a relative check (``sluice.compareTo: primary``) renders its template twice —
  ``render(..., primary=True)`` for the primary's side — and ``check_relative`` judges
  ``canary - primary`` against the range; a halt appends both sides to Flagger's custom-metric
  message: "Halt podinfo.test advancement error-rate 3.20 > 1 (canary 4.20, primary 1.00)".

The messages are Flagger's, character for character (pkg/controller/scheduler_metrics.go), so
the Go verbs are reproduced: ``%.2f``, ``%v`` of a float64 (``go_float``) and ``%v`` of a
``time.Duration`` (``go_duration``). Halt messages name ``<canary>.<namespace>``; the
"not receiving traffic" message names ``<targetRef.name>.<namespace>`` — as in Flagger.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import math

from libs import errors
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from libs.model import extensions, standalone, templates

Severity = analysis_model.Severity
Metric = analysis_model.Metric
Canary = canary_model.Canary

SUCCESS_RATE = "request-success-rate"
DURATION = "request-duration"
APISIX = "apisix"
INLINE_PROVIDER = "prometheus"  # a deprecated inline ``query`` runs on the metrics server
# Flagger's text when a metric has neither a builtin name, a templateRef nor a query.
NO_USABLE_QUERY = "Metric query failed for no usable metrics template and query were configured"


class Kind(enum.StrEnum):
    """Where a metric's query comes from."""

    BUILTIN = "builtin"  # request-success-rate / request-duration of the traffic provider
    TEMPLATE = "template"  # a MetricTemplate (templateRef)
    INLINE = "inline"  # the deprecated ``query`` field


class MissingTemplate(errors.NotFound):
    """The MetricTemplate a metric's ``templateRef`` names does not exist."""


class RenderError(errors.InvalidInput):
    """A MetricTemplate's query could not be filled in (a missing ``templateVariables`` key)."""


@dataclasses.dataclass(frozen=True)
class Query:
    """The query of one metric, ready to run."""

    metric: str
    kind: Kind
    provider: str  # builtin: the canary's provider; template: its provider type; inline: prometheus
    promql: str


@dataclasses.dataclass(frozen=True)
class Result:
    """One metric check; ``value`` is None when the query gave none. Field names match
    ``messages.MetricChecked``; ``message`` is Flagger's text when the check failed."""

    metric: str
    value: float | None
    min: float | None
    max: float | None
    passed: bool
    message: str = ""
    severity: Severity = Severity.INFO  # Flagger: warn for halts and no values, error for failures
    dry_run: bool = False  # a failure is only reported (``message`` says it would have halted)
    canary_value: float | None = None  # a relative check's sides; ``value`` is their difference
    primary_value: float | None = None

    @property
    def halts(self) -> bool:
        """Whether this check stops the step (failed, and not a dry run)."""
        return not self.passed and not self.dry_run


# --------------------------------------------------------------------------- queries


def kind_of(metric: Metric) -> Kind | None:
    """The metric's kind; None when it has no usable query (no builtin name, ref or query)."""
    if metric.template_ref is not None:
        return Kind.TEMPLATE
    if metric.query:
        return Kind.INLINE
    if metric.is_builtin():
        return Kind.BUILTIN
    return None


def template_key(canary: Canary, metric: Metric) -> tuple[str, str] | None:
    """``(namespace, name)`` of the metric's MetricTemplate (the canary's namespace unless the
    ref names another), or None when it has no ``templateRef``."""
    ref = metric.template_ref
    if ref is None:
        return None
    return ref.namespace or canary.namespace, ref.name


def variables(canary: Canary, metric: Metric, *, primary: bool = False) -> dict[str, str]:
    """Flagger's template model for a metric (``toMetricModel``) without ``variables``.

    ``interval`` is the metric's, default ``1m`` for every kind (Flagger defaults it for builtin
    and inline metrics only and renders an empty one into a template's query). For the primary
    side of a relative check ``target`` and ``service`` name the primary's Deployment and
    Service (``<name>-primary``); the rest is the same.
    """
    spec = canary.spec
    target = spec.target_ref.name
    service = spec.service.name or target
    if primary:
        target += extensions.PRIMARY_SUFFIX
        service += extensions.PRIMARY_SUFFIX
    return {
        "name": canary.name,
        "namespace": canary.namespace,
        "target": target,
        "service": service,
        "ingress": spec.ingress_ref.name if spec.ingress_ref else target,
        "route": spec.route_ref.name if spec.route_ref else target,
        "interval": metric.interval_or_default(),
        **standalone.variables(canary, primary=primary),
    }


def builtin_provider(canary: Canary) -> str:
    """The metrics provider Flagger names in builtin messages: the canary's provider, with
    ``:service`` when the target is a Service."""
    provider = canary.provider()
    if canary.spec.target_ref.kind == "Service":
        provider += ":service"
    return provider


def render(
    canary: Canary,
    metric: Metric,
    template: templates.MetricTemplate | None = None,
    *,
    primary: bool = False,
) -> Query:
    """The query of ``metric`` (with ``primary``: its primary side, for a relative check).

    Raises ``MissingTemplate`` (a templateRef without its template), ``RenderError`` (a
    template variable missing), ``errors.Unsupported`` (a builtin metric of a provider whose
    builtin queries Sluice does not have) or ``errors.InvalidInput`` (no usable query, or a
    primary side asked of a metric without a MetricTemplate).
    """
    kind = kind_of(metric)
    model = variables(canary, metric, primary=primary)
    if primary and kind is not Kind.TEMPLATE:
        raise errors.InvalidInput(
            f"metric {metric.name}: {extensions.COMPARE_TO} needs a templateRef",
            path="templateVariables",
            expected="a metric with templateRef",
        )
    if kind is Kind.BUILTIN:
        if canary.provider() != APISIX:
            raise errors.Unsupported(
                f"builtin metric {metric.name}: Sluice has builtin queries for provider "
                f"{APISIX} only, the canary's provider is {canary.provider()}; "
                "use a MetricTemplate"
            )
        queries = (
            templates.APISIX_STANDALONE_QUERIES
            if standalone.is_standalone(canary)
            else templates.APISIX_BUILTIN_QUERIES
        )
        promql = templates.render_query(queries[metric.name], model)
        return Query(metric.name, kind, builtin_provider(canary), promql)
    if kind is Kind.TEMPLATE:
        _, name = template_key(canary, metric) or ("", "")
        if template is None:  # the text of Flagger's lister error
            raise MissingTemplate(f'metrictemplate.flagger.app "{name}" not found')
        given = extensions.primary_variables(metric) if primary else metric.template_variables
        try:
            promql = templates.render_query(template.spec.query, model, given)
        except errors.InvalidInput as exc:
            raise RenderError(exc.message, path=exc.path, expected=exc.expected) from exc
        return Query(metric.name, kind, template.spec.provider.type, promql)
    if kind is Kind.INLINE:
        assert metric.query is not None
        promql = templates.render_query(metric.query, model, metric.template_variables)
        return Query(metric.name, kind, INLINE_PROVIDER, promql)
    raise errors.InvalidInput(
        f"metric {metric.name}: no usable metrics template and query were configured",
        path="templateRef",
        expected="a builtin metric name, a templateRef or a query",
    )


# --------------------------------------------------------------------------- checks


def check(canary: Canary, metric: Metric, outcome: float | BaseException) -> Result:
    """``evaluate`` a value, or explain the error that took its place (``failed``)."""
    if isinstance(outcome, BaseException):
        return failed(canary, metric, outcome)
    return evaluate(canary, metric, outcome)


def check_relative(
    canary: Canary,
    metric: Metric,
    canary_outcome: float | BaseException,
    primary_outcome: float | BaseException,
) -> Result:
    """A relative check: ``canary - primary`` against the metric's range. No value on either
    side is Flagger's "no values found" for the metric; any other error of a side (the
    canary's first) is that metric's failure, as for a single query."""
    canary_value = _finite_or_none(canary_outcome)
    primary_value = _finite_or_none(primary_outcome)
    outcomes = (canary_outcome, primary_outcome)
    error = next(
        (
            o
            for o in outcomes
            if isinstance(o, BaseException) and not isinstance(o, errors.NoValuesFound)
        ),
        None,
    )
    if error is None and (canary_value is None or primary_value is None):
        error = next(
            (o for o in outcomes if isinstance(o, errors.NoValuesFound)),
            errors.NoValuesFound("no values found"),  # a NaN side
        )
    if error is not None:
        return dataclasses.replace(
            failed(canary, metric, error), canary_value=canary_value, primary_value=primary_value
        )
    assert canary_value is not None
    assert primary_value is not None
    return evaluate(
        canary, metric, canary_value - primary_value, sides=(canary_value, primary_value)
    )


def evaluate(
    canary: Canary,
    metric: Metric,
    value: float,
    *,
    sides: tuple[float, float] | None = None,
) -> Result:
    """The measured ``value`` against the metric's range, as Flagger checks it; ``sides``
    (canary, primary) when ``value`` is their difference (a relative check)."""
    if math.isnan(value):  # an adapter never answers NaN; treated as Flagger does
        return failed(canary, metric, errors.NoValuesFound("no values found"))
    bounds = metric.effective_range()
    who = f"{canary.name}.{canary.namespace}"
    finding = _violation(metric, value)
    message = ""
    dry_run = extensions.dry_run(metric)
    if finding is not None:
        what, comparison = finding
        if sides is not None:
            comparison += f" (canary {go_fixed2(sides[0])}, primary {go_fixed2(sides[1])})"
        if dry_run:
            message = (
                f"Dry-run metric {metric.name} {comparison} would have halted {who} advancement"
            )
        else:
            message = f"Halt {who} advancement {what} {comparison}"
    return Result(
        metric=metric.name,
        value=value,
        min=bounds.min,
        max=bounds.max,
        passed=not message,
        message=message,
        severity=Severity.WARN if message else Severity.INFO,
        dry_run=dry_run,
        canary_value=sides[0] if sides else None,
        primary_value=sides[1] if sides else None,
    )


def _violation(metric: Metric, value: float) -> tuple[str, str] | None:
    """``(what, comparison)`` of a value outside the metric's range, worded as Flagger's halt
    messages word it (``("success rate", "97.10% < 99%")``), or None when it is inside."""
    bounds = metric.effective_range()
    builtin = kind_of(metric) is Kind.BUILTIN
    if builtin and metric.name == SUCCESS_RATE:
        if bounds.min is not None and value < bounds.min:
            return "success rate", f"{go_fixed2(value)}% < {go_float(bounds.min)}%"
        if bounds.max is not None and value > bounds.max:
            return "success rate", f"{go_fixed2(value)}% > {go_float(bounds.max)}%"
        return None
    if builtin and metric.name == DURATION:
        # Flagger: time.Duration(int64(value)) * time.Millisecond, and the bounds likewise
        measured = _whole_ms(value)
        if bounds.min is not None and measured < _whole_ms(bounds.min):
            return "request duration", f"{_ms_text(measured)} < {_ms_text(_whole_ms(bounds.min))}"
        if bounds.max is not None and measured > _whole_ms(bounds.max):
            return "request duration", f"{_ms_text(measured)} > {_ms_text(_whole_ms(bounds.max))}"
        return None
    if bounds.min is not None and value < bounds.min:
        return metric.name, f"{go_fixed2(value)} < {go_float(bounds.min)}"
    if bounds.max is not None and value > bounds.max:
        return metric.name, f"{go_fixed2(value)} > {go_float(bounds.max)}"
    return None


def _finite_or_none(outcome: float | BaseException) -> float | None:
    if isinstance(outcome, BaseException) or math.isnan(outcome):
        return None
    return outcome


def failed(canary: Canary, metric: Metric, error: BaseException) -> Result:
    """The check of a metric whose query gave no value, with Flagger's message for why (a
    dry-run metric's message says it would have halted and quotes Flagger's)."""
    bounds = metric.effective_range()
    kind = kind_of(metric)
    severity = Severity.ERROR
    if isinstance(error, errors.NoValuesFound):
        severity = Severity.WARN
        if kind is Kind.BUILTIN:
            target = canary.spec.target_ref.name
            message = (
                f"Halt advancement no values found for {builtin_provider(canary)} metric "
                f"{metric.name} probably {target}.{canary.namespace} is not receiving traffic"
            )
        elif kind is Kind.TEMPLATE:
            message = f"Halt advancement no values found for custom metric: {metric.name}: {error}"
        else:
            message = f"Halt advancement no values found for metric: {metric.name}"
    elif kind is Kind.TEMPLATE:
        namespace, name = template_key(canary, metric) or ("", "")
        if isinstance(error, MissingTemplate):
            message = f"Metric template {name}.{namespace} error: {error}"
        elif isinstance(error, RenderError):
            message = f"Metric template {name}.{namespace} query render error: {error}"
        else:
            message = f"Metric query failed for {metric.name}: {error}"
    elif kind is Kind.BUILTIN:
        message = f"Prometheus query failed: {error}"
    elif kind is Kind.INLINE:
        message = f"Prometheus query failed for {metric.name}: {error}"
    else:
        message = NO_USABLE_QUERY
    dry_run = extensions.dry_run(metric)
    if dry_run:
        who = f"{canary.name}.{canary.namespace}"
        message = f"Dry-run metric {metric.name} would have halted {who} advancement: {message}"
        severity = Severity.WARN  # only reported: never an error alert
    return Result(
        metric=metric.name,
        value=None,
        min=bounds.min,
        max=bounds.max,
        passed=False,
        message=message,
        severity=severity,
        dry_run=dry_run,
    )


# --------------------------------------------------------------------------- Go's formatting


def go_float(x: float) -> str:
    """Go's ``%v`` of a float64 (strconv's ``'g'`` with the shortest precision): the shortest
    digits that read back as ``x``, in exponent form when the decimal exponent is < -4 or >= 6
    (``99``, ``99.5``, ``0.0001``, ``1e-05``, ``123456``, ``1e+06``, ``1.234567e+06``)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return f"{sign}0"
    digits, dp = _shortest(abs(x))
    exponent = dp - 1
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_fixed2(x: float) -> str:
    """Go's ``%.2f`` (correctly rounded like Python's; infinities and NaN spelled as Go does)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:.2f}"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``999ns``, ``1.5µs``, ``500ms``, ``1.234s``,
    ``1m0.5s``, ``2h0m0s``."""
    negative = ns < 0
    u = -ns if negative else ns
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        if u < 1_000:
            precision, unit = 0, "ns"
        elif u < 1_000_000:
            precision, unit = 3, "µs"  # U+00B5, as Go writes it
        else:
            precision, unit = 6, "ms"
        fraction, u = _fraction(u, precision)
        text = f"{u}{fraction}{unit}"
    else:
        fraction, u = _fraction(u, 9)
        text = f"{u % 60}{fraction}s"
        u //= 60
        if u > 0:
            text = f"{u % 60}m{text}"
            u //= 60
            if u > 0:
                text = f"{u}h{text}"
    return f"-{text}" if negative else text


def _shortest(x: float) -> tuple[str, int]:
    """The shortest round-trip decimal digits of a positive finite ``x`` (no trailing zeros)
    and the position of the decimal point: ``x == 0.<digits> * 10**dp``."""
    _sign, digit_tuple, exponent = decimal.Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    return digits, len(digits) + exponent


def _fraction(v: int, precision: int) -> tuple[str, int]:
    """Go's ``fmtFrac``: the last ``precision`` digits of ``v`` as ``.ddd`` without trailing
    zeros (nothing when they are all zero), and ``v`` without them."""
    kept: list[str] = []
    printing = False
    for _ in range(precision):
        digit = v % 10
        printing = printing or digit != 0
        if printing:
            kept.append(str(digit))
        v //= 10
    return ("." + "".join(reversed(kept)) if printing else ""), v


def _whole_ms(x: float) -> int | float:
    """Go's ``int64(x)`` for a millisecond count: truncated toward zero (an infinity stays
    one, where Go's conversion is undefined)."""
    return int(x) if math.isfinite(x) else x


def _ms_text(ms: int | float) -> str:
    """``%v`` of ``time.Duration(ms) * time.Millisecond``."""
    if isinstance(ms, float):  # infinite or NaN
        return go_float(ms)
    return go_duration(ms * 1_000_000)

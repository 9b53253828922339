"""``spec.analysis`` of a Canary: schedule, weights, A/B match, metrics, webhooks and alerts.

Defaults Flagger applies at runtime are exposed as methods, never baked into the decoded
values, so that an object encodes back to what the user wrote.
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec

from libs.model import durations, meta

#: Builtin metric names Flagger's APISIX observer answers without a query or template.
BUILTIN_METRICS: tuple[str, ...] = ("request-success-rate", "request-duration")

DEFAULT_INTERVAL_SECONDS = 60.0
MIN_INTERVAL_SECONDS = 10.0
DEFAULT_METRIC_INTERVAL = "1m"
DEFAULT_WEBHOOK_TIMEOUT = "10s"
DEFAULT_READY_THRESHOLD = 100
DEFAULT_MAX_WEIGHT = 100


class WebhookType(enum.StrEnum):
    """When a webhook runs; ``""`` (unset) means ``rollout``."""

    UNSET = ""
    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


class Severity(enum.StrEnum):
    """Alert severity; ``""`` (unset) means ``info`` in Sluice (Flagger never fires those)."""

    UNSET = ""
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class StringMatch(meta.Model, frozen=True):
    """One condition on a header or query parameter: exactly one of the four operators."""

    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    regex: str | None = None

    def operators(self) -> list[tuple[str, str]]:
        """``[(op, value)]`` for every operator set (a valid match has exactly one)."""
        return [
            (op, value)
            for op, value in (
                ("exact", self.exact),
                ("prefix", self.prefix),
                ("suffix", self.suffix),
                ("regex", self.regex),
            )
            if value is not None
        ]


class MatchCondition(meta.Model, frozen=True):
    """One A/B match entry: all its conditions must hold (entries are OR-ed)."""

    headers: dict[str, StringMatch] = msgspec.field(default_factory=dict)
    query_params: dict[str, StringMatch] = msgspec.field(default_factory=dict)
    source_labels: meta.StringMap = msgspec.field(default_factory=dict)


class SessionAffinity(meta.Model, frozen=True):
    """Cookie-based session affinity for a canary run (rejected on APISIX: a gateway route cannot
    set a cookie on the responses of one backend of a weighted split)."""

    cookie_name: str
    primary_cookie_name: str | None = None
    domain: str | None = None
    http_only: bool | None = None
    max_age: meta.NonNegative | None = None
    partitioned: bool | None = None
    path: str | None = None
    same_site: Literal["Strict", "Lax", "None"] | None = None
    secure: bool | None = None

    def max_age_seconds(self) -> int:
        """Cookie lifetime, Flagger's default 86400 s."""
        return self.max_age if self.max_age is not None else 86400


class ThresholdRange(meta.Model, frozen=True):
    """Accepted range of a metric value; a missing bound is not checked."""

    min: float | None = None
    max: float | None = None


class Metric(meta.Model, frozen=True):
    """One metric check: builtin by name, a MetricTemplate, or an inline (deprecated) query."""

    name: str
    interval: meta.Interval | None = None
    threshold: float | None = None
    threshold_range: ThresholdRange | None = None
    query: str | None = None
    template_ref: meta.CrossNamespaceObjectReference | None = None
    template_variables: meta.StringMap = msgspec.field(default_factory=dict)

    def interval_or_default(self) -> str:
        """The query range: the metric's interval, default ``1m``."""
        return self.interval or DEFAULT_METRIC_INTERVAL

    def interval_seconds(self) -> float:
        """``interval_or_default()`` in seconds."""
        return durations.interval_seconds(self.interval, default=60.0)

    def is_builtin(self) -> bool:
        """A builtin metric: a builtin name with neither templateRef nor query."""
        return self.template_ref is None and not self.query and self.name in BUILTIN_METRICS

    def effective_range(self) -> ThresholdRange:
        """thresholdRange, or the deprecated threshold read as Flagger does.

        Flagger reads a bare ``threshold`` as a minimum for request-success-rate and as a
        maximum for every other metric.
        """
        if self.threshold_range is not None:
            return self.threshold_range
        if self.threshold is None:
            return ThresholdRange()
        if self.name == "request-success-rate":
            return ThresholdRange(min=self.threshold)
        return ThresholdRange(max=self.threshold)


class Webhook(meta.Model, frozen=True):
    """A user webhook called with Flagger's JSON payload."""

    name: str
    url: meta.HttpUrl
    type: WebhookType = WebhookType.UNSET
    mute_alert: bool = False
    timeout: meta.Duration | None = None
    metadata: meta.StringMap = msgspec.field(default_factory=dict)
    retries: meta.NonNegative | None = None
    disable_tls: bool = msgspec.field(default=False, name="disableTLS")

    def effective_type(self) -> WebhookType:
        """The webhook type; unset means ``rollout``."""
        return self.type or WebhookType.ROLLOUT

    def timeout_seconds(self) -> float:
        """Request timeout, default 10 s."""
        return durations.interval_seconds(self.timeout, default=10.0)


class Alert(meta.Model, frozen=True):
    """An alert routed to an AlertProvider."""

    name: str
    provider_ref: meta.CrossNamespaceObjectReference
    severity: Severity = Severity.UNSET

    def effective_severity(self) -> Severity:
        """The alert's severity; unset means ``info`` (Sluice goes further than Flagger)."""
        return self.severity or Severity.INFO


class CanaryAnalysis(meta.Model, frozen=True):
    """The analysis schedule and checks (``spec.analysis``, deprecated ``spec.canaryAnalysis``)."""

    interval: meta.Interval | None = None
    iterations: meta.NonNegative | None = None
    threshold: int | None = None
    max_weight: meta.Weight | None = None
    step_weight: meta.Weight | None = None
    step_weights: tuple[meta.Weight, ...] | None = None
    step_weight_promotion: meta.Weight | None = None
    mirror: bool = False
    mirror_weight: meta.Weight | None = None
    primary_ready_threshold: meta.Percent | None = None
    canary_ready_threshold: meta.Percent | None = None
    match: tuple[MatchCondition, ...] = ()
    session_affinity: SessionAffinity | None = None
    metrics: tuple[Metric, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    alerts: tuple[Alert, ...] = ()

    def interval_seconds(self) -> float:
        """Seconds between steps: default 60 s, at least 10 s (Flagger's clamp)."""
        return durations.interval_seconds(
            self.interval, default=DEFAULT_INTERVAL_SECONDS, minimum=MIN_INTERVAL_SECONDS
        )

    def threshold_or_default(self) -> int:
        """Failed checks before rollback: the threshold, or 1 when unset or <= 0."""
        return self.threshold if self.threshold is not None and self.threshold > 0 else 1

    def iterations_or_zero(self) -> int:
        """The iterations count (0 when unset)."""
        return self.iterations or 0

    def primary_ready_percent(self) -> int:
        """% of updated primary replicas that must be available, default 100."""
        return _or_default(self.primary_ready_threshold, DEFAULT_READY_THRESHOLD)

    def canary_ready_percent(self) -> int:
        """% of updated canary replicas that must be available, default 100."""
        return _or_default(self.canary_ready_threshold, DEFAULT_READY_THRESHOLD)

    def webhooks_of(self, kind: WebhookType) -> list[Webhook]:
        """The webhooks of one type (unset counts as ``rollout``), in spec order."""
        return [hook for hook in self.webhooks if hook.effective_type() == kind]


def _or_default(value: int | None, default: int) -> int:
    return value if value is not None else default

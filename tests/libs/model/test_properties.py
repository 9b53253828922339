"""Property tests: generated valid Canaries round-trip unchanged and validate cleanly."""

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.model import analysis, canary, meta, validation
from libs.model.documents import Document

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
INTERVALS = st.builds(lambda n, u: f"{n}{u}", st.integers(0, 600), st.sampled_from(["s", "m"]))
TIMEOUTS = INTERVALS | st.sampled_from(["1m30s", "500ms", "2m10s"])
WEIGHTS = st.integers(0, 100)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
VALUES = st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000).map(float)


@st.composite
def threshold_ranges(draw: st.DrawFn) -> analysis.ThresholdRange:
    low, high = sorted([draw(VALUES), draw(VALUES)])
    which = draw(st.sampled_from(["min", "max", "both"]))
    return analysis.ThresholdRange(
        min=low if which in ("min", "both") else None,
        max=high if which in ("max", "both") else None,
    )


@st.composite
def metrics(draw: st.DrawFn) -> tuple[analysis.Metric, ...]:
    names = draw(st.lists(st.sampled_from(analysis.BUILTIN_METRICS), unique=True, max_size=2))
    result = []
    for name in names:
        use_range = draw(st.booleans())
        result.append(
            analysis.Metric(
                name=name,
                interval=draw(st.none() | INTERVALS),
                threshold=None if use_range else draw(VALUES),
                threshold_range=draw(threshold_ranges()) if use_range else None,
            )
        )
    custom = draw(st.booleans())
    if custom:
        result.append(
            analysis.Metric(
                name="custom",
                template_ref=meta.CrossNamespaceObjectReference(
                    name=draw(NAMES), namespace=draw(st.none() | NAMES)
                ),
                template_variables=draw(st.dictionaries(NAMES, TEXT, max_size=3)),
                threshold_range=draw(threshold_ranges()),
            )
        )
    return tuple(result)


WEBHOOKS = st.builds(
    analysis.Webhook,
    name=NAMES,
    url=st.sampled_from(["http://loadtester.test/", "https://gate.example.com/check"]),
    type=st.sampled_from(list(analysis.WebhookType)),
    mute_alert=st.booleans(),
    timeout=st.none() | TIMEOUTS,
    metadata=st.dictionaries(NAMES, TEXT, max_size=3),
    retries=st.none() | st.integers(0, 10),
    disable_tls=st.booleans(),
)
ALERTS = st.builds(
    analysis.Alert,
    name=NAMES,
    provider_ref=st.builds(
        meta.CrossNamespaceObjectReference, name=NAMES, namespace=st.none() | NAMES
    ),
    severity=st.sampled_from(list(analysis.Severity)),
)
STRING_MATCH = st.sampled_from(["exact", "prefix", "suffix", "regex"]).flatmap(
    lambda op: TEXT.map(lambda value: analysis.StringMatch(**{op: value}))
)
MATCH = st.builds(
    analysis.MatchCondition,
    headers=st.dictionaries(NAMES, STRING_MATCH, min_size=1, max_size=2),
    query_params=st.dictionaries(NAMES, STRING_MATCH, max_size=2),
)


@st.composite
def analyses(draw: st.DrawFn) -> analysis.CanaryAnalysis:
    kind = draw(st.sampled_from(["stepWeight", "stepWeights", "iterations", "ab"]))
    steps = None
    if kind == "stepWeights":
        steps = tuple(sorted(draw(st.lists(WEIGHTS, min_size=1, max_size=6, unique=True))))
    return analysis.CanaryAnalysis(
        interval=draw(INTERVALS),
        threshold=draw(st.integers(-5, 100)),
        iterations=draw(st.integers(0, 50)) if kind in ("iterations", "ab") else None,
        step_weight=draw(WEIGHTS) if kind == "stepWeight" else None,
        step_weights=steps,
        max_weight=draw(st.none() | WEIGHTS),
        step_weight_promotion=draw(st.none() | WEIGHTS),
        primary_ready_threshold=draw(st.none() | WEIGHTS),
        canary_ready_threshold=draw(st.none() | WEIGHTS),
        match=tuple(draw(st.lists(MATCH, min_size=1, max_size=2))) if kind == "ab" else (),
        metrics=draw(metrics()),
        webhooks=tuple(draw(st.lists(WEBHOOKS, max_size=3))),
        alerts=tuple(draw(st.lists(ALERTS, max_size=2))),
    )


@st.composite
def canaries(draw: st.DrawFn) -> canary.Canary:
    a = draw(analyses())
    target = draw(NAMES)
    return canary.Canary(
        api_version=canary.API_VERSION,
        kind=canary.KIND,
        metadata=meta.ObjectMeta(
            name=draw(NAMES),
            namespace=draw(st.none() | NAMES),
            labels=draw(st.dictionaries(NAMES, TEXT, max_size=2)),
        ),
        spec=canary.CanarySpec(
            provider=draw(st.sampled_from([None, "apisix"])),
            target_ref=canary.TargetRef(
                api_version="apps/v1",
                kind=draw(st.sampled_from(["Deployment", "DaemonSet"])),
                name=target,
            ),
            route_ref=canary.RouteRef(
                api_version="apisix.apache.org/v2", kind="ApisixRoute", name=draw(NAMES)
            ),
            autoscaler_ref=draw(
                st.none()
                | st.builds(
                    canary.AutoscalerRef,
                    api_version=st.just("autoscaling/v2"),
                    kind=st.just("HorizontalPodAutoscaler"),  # Sluice rejects ScaledObject
                    name=NAMES,
                )
            ),
            service=canary.CanaryService(
                port=draw(st.integers(1, 65535)),
                target_port=draw(st.none() | st.integers(1, 65535) | NAMES),
                port_name=draw(st.none() | NAMES),
                name=draw(st.none() | NAMES),
            ),
            progress_deadline_seconds=draw(st.none() | st.integers(0, 3600)),
            skip_analysis=draw(st.booleans()),
            suspend=draw(st.booleans()),
            analysis=a,
        ),
    )


@settings(max_examples=60, deadline=None)
@given(canaries())
def test_round_trip(c: canary.Canary) -> None:
    assert msgspec.json.decode(msgspec.json.encode(c), type=canary.Canary) == c
    plain: dict[str, Any] = msgspec.to_builtins(c)
    assert canary.parse_canary(plain) == c


@settings(max_examples=60, deadline=None)
@given(canaries())
def test_generated_canaries_validate(c: canary.Canary) -> None:
    doc = Document(source="generated", line=1, data=msgspec.to_builtins(c))
    assert [str(p) for p in validation.validate([doc])] == []

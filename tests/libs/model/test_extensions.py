"""Sluice's metric extensions read from ``templateVariables``: parsing and validation rules."""

from __future__ import annotations

import pathlib
from typing import Any

import msgspec
import pytest
import yaml

from libs import errors
from libs.model import analysis, canary, extensions

PATH = "spec.analysis.metrics[0]"


def metric(**fields: Any) -> analysis.Metric:
    return msgspec.convert({"name": "error-rate", **fields}, analysis.Metric)


def template_metric(**variables: str) -> analysis.Metric:
    return metric(templateRef={"name": "error-rate"}, templateVariables=variables)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [({}, False), ({"sluice.dryRun": "true"}, True), ({"sluice.dryRun": "false"}, False)],
)
def test_dry_run(variables: dict[str, str], expected: bool) -> None:
    assert extensions.dry_run(template_metric(**variables)) is expected


def test_compare_to() -> None:
    assert extensions.compare_to(template_metric()) is None
    assert extensions.compare_to(template_metric(**{"sluice.compareTo": "primary"})) == "primary"


def test_primary_variables_take_primary_keys_over_plain_ones() -> None:
    m = template_metric(
        routeLabel="test_podinfo-podinfo-canary_.+",
        team="checkout",
        **{"primary.routeLabel": "test_podinfo_.+", "sluice.compareTo": "primary"},
    )
    variables = extensions.primary_variables(m)
    assert variables["routeLabel"] == "test_podinfo_.+"
    assert variables["team"] == "checkout"  # no primary.team: the canary's value
    # the canary's own variables are untouched
    assert m.template_variables["routeLabel"] == "test_podinfo-podinfo-canary_.+"


def test_a_valid_metric_has_no_problems() -> None:
    m = template_metric(**{"sluice.dryRun": "true", "sluice.compareTo": "primary", "x": "y"})
    assert list(extensions.problems(m, PATH)) == []
    builtin_dry_run = metric(name="request-duration", templateVariables={"sluice.dryRun": "false"})
    assert list(extensions.problems(builtin_dry_run, PATH)) == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            {"templateRef": {"name": "t"}, "templateVariables": {"sluice.dryrun": "true"}},
            (
                f"{PATH}.templateVariables.sluice.dryrun",
                "unknown Sluice option, expected one of sluice.dryRun, sluice.compareTo "
                '(did you mean "sluice.dryRun"?)',
            ),
        ),
        (
            {"templateRef": {"name": "t"}, "templateVariables": {"sluice.verbose": "1"}},
            (
                f"{PATH}.templateVariables.sluice.verbose",
                "unknown Sluice option, expected one of sluice.dryRun, sluice.compareTo",
            ),
        ),
        (
            {"templateRef": {"name": "t"}, "templateVariables": {"sluice.dryRun": "True"}},
            (f"{PATH}.templateVariables.sluice.dryRun", 'expected "true" or "false", got "True"'),
        ),
        (
            {"templateRef": {"name": "t"}, "templateVariables": {"sluice.compareTo": "canary"}},
            (f"{PATH}.templateVariables.sluice.compareTo", 'expected "primary", got "canary"'),
        ),
        (
            {"name": "request-success-rate", "templateVariables": {"sluice.compareTo": "primary"}},
            (
                f"{PATH}.templateVariables.sluice.compareTo",
                "expected a metric with templateRef (a relative check renders a MetricTemplate's "
                "query for the canary and the primary), got a builtin metric",
            ),
        ),
        (
            {"query": "up", "templateVariables": {"sluice.compareTo": "primary"}},
            (
                f"{PATH}.templateVariables.sluice.compareTo",
                "expected a metric with templateRef (a relative check renders a MetricTemplate's "
                "query for the canary and the primary), got an inline query",
            ),
        ),
    ],
)
def test_problems(fields: dict[str, Any], problem: tuple[str, str]) -> None:
    assert list(extensions.problems(metric(**fields), PATH)) == [problem]


def test_only_sluice_keys_are_allowed_without_a_template_ref() -> None:
    assert extensions.only_extensions({})
    assert extensions.only_extensions({"sluice.dryRun": "true"})
    assert not extensions.only_extensions({"sluice.dryRun": "true", "team": "a"})


def test_the_watchers_parse_accepts_extensions_and_names_a_bad_one() -> None:
    """``parse_canary`` (what the watcher runs on every Canary) applies the same rules."""
    corpus = pathlib.Path(__file__).parents[2] / "data" / "manifests" / "valid"
    obj = list(yaml.safe_load_all((corpus / "metric-extensions.yaml").read_text()))[1]
    parsed = canary.parse_canary(obj)
    dry, relative = parsed.get_analysis().metrics[1:]
    assert extensions.dry_run(dry)
    assert extensions.compare_to(relative) == "primary"
    assert not extensions.dry_run(relative)
    obj["spec"]["analysis"]["metrics"][1]["templateVariables"] = {"sluice.dryRun": "on"}
    with pytest.raises(errors.InvalidInput) as caught:
        canary.parse_canary(obj)
    assert caught.value.path == "spec.analysis.metrics[1].templateVariables.sluice.dryRun"

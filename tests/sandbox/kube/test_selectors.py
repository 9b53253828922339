"""Label and field selectors, and the JSONPath subset of printer columns."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.kube import jsonpath, selectors

LABELS = {"app": "web", "tier": "front", "env": "prod"}

LABEL_CASES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=api", False),
    ("app!=api", True),
    ("missing!=x", True),
    ("app", True),
    ("!app", False),
    ("!missing", True),
    ("tier in (front,back)", True),
    ("tier in (back)", False),
    ("tier notin (back, middle)", True),
    ("tier notin (front)", False),
    ("missing notin (front)", True),
    ("missing in (front)", False),
    ("app=web,tier in (front),!legacy", True),
    ("app=web,env=dev", False),
    (" app = web , env in ( prod ) ", True),
    ("example.com/owner", False),
]


@pytest.mark.parametrize(("selector", "matches"), LABEL_CASES)
def test_label_selectors(selector: str, matches: bool) -> None:
    predicate = selectors.parse_labels(selector)
    assert (predicate is None or predicate(LABELS)) is matches


@pytest.mark.parametrize("bad", ["a in (b", "a in b)", "=x", "a=b=c", "in (x)", "a notin"])
def test_bad_label_selectors(bad: str) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse_labels(bad)


EVENT = {
    "metadata": {"name": "e1", "namespace": "test"},
    "involvedObject": {"kind": "Canary", "name": "podinfo", "namespace": "test", "uid": "u1"},
    "type": "Normal",
    "reason": "Synced",
}
POD = {"metadata": {"name": "p"}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}}

FIELD_CASES: list[tuple[dict[str, Any], str, bool]] = [
    (EVENT, "involvedObject.name=podinfo", True),
    (EVENT, "involvedObject.kind=Canary,involvedObject.uid=u1,involvedObject.namespace=test", True),
    (EVENT, "involvedObject.kind=Deployment", False),
    (EVENT, "type=Warning", False),
    (EVENT, "reason!=Synced", False),
    (EVENT, "metadata.name==e1,metadata.namespace=test", True),
    (POD, "spec.nodeName=node-1", True),
    (POD, "status.phase!=Running", False),
    (POD, "spec.missing=", True),
]


@pytest.mark.parametrize(("obj", "selector", "matches"), FIELD_CASES)
def test_field_selectors(obj: dict[str, Any], selector: str, matches: bool) -> None:
    predicate = selectors.parse_fields(selector)
    assert predicate is not None
    assert predicate(obj) is matches


def test_bad_field_selector() -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse_fields("no operator")


DOC = {
    "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"analysis": {"interval": "1m", "stepWeights": [1, 2]}},
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "Promoted", "status": "False"}]
    },
}

JSONPATH_CASES = [
    (".spec.analysis.interval", ["1m"]),
    ("{.spec.analysis.interval}", ["1m"]),
    ("$.spec.analysis.interval", ["1m"]),
    (".spec.analysis.stepWeights", [[1, 2]]),
    (".spec.analysis.stepWeights[1]", [2]),
    (".spec.analysis.stepWeights[-1]", [2]),
    (".spec.analysis.stepWeights[*]", [1, 2]),
    (".metadata.labels['app.kubernetes.io/name']", ["web"]),
    ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
    (".status.conditions[?(@.type!='Ready')].type", ["Promoted"]),
    (".status.conditions[*].type", ["Ready", "Promoted"]),
    (".status.missing", []),
    (".spec.analysis.stepWeights[5]", []),
    ("not a path", []),
]


@pytest.mark.parametrize(("path", "found"), JSONPATH_CASES)
def test_jsonpath(path: str, found: list[Any]) -> None:
    assert jsonpath.find(DOC, path) == found


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (10, "10"),
        (True, "true"),
        (1.5, "1.5"),
        ([1, 2], "[1,2]"),
        ({"a": 1}, '{"a":1}'),
    ],
)
def test_jsonpath_text(value: Any, text: str) -> None:
    assert jsonpath.text(value) == text

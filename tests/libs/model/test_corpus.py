"""The manifest corpus: every valid document passes, every invalid one fails exactly as expected.

Each file in ``tests/data/manifests/invalid`` starts with a comment saying what is broken, then
one ``# expect: <problem line>`` per problem, in the order validation reports them.
"""

from pathlib import Path

import pytest

from libs.model import documents, validation

MANIFESTS = Path(__file__).parents[2] / "data" / "manifests"
VALID = sorted((MANIFESTS / "valid").glob("*.yaml")) + sorted(MANIFESTS.glob("podinfo-*.yaml"))
INVALID = sorted((MANIFESTS / "invalid").glob("*.yaml"))
EXPECT = "# expect: "


def _load(path: Path) -> list[documents.Document]:
    return documents.load_documents(path.read_text(), path.name)


def test_corpus_sizes() -> None:
    assert len(VALID) >= 10
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_manifest(path: Path) -> None:
    docs = _load(path)
    assert docs
    assert [str(p) for p in validation.validate(docs)] == []


def test_valid_corpus_as_one_set() -> None:
    docs = [doc for path in VALID for doc in _load(path)]
    assert [str(p) for p in validation.validate(docs)] == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_manifest(path: Path) -> None:
    text = path.read_text()
    expected = [line[len(EXPECT) :] for line in text.splitlines() if line.startswith(EXPECT)]
    assert expected, f"{path.name} has no '# expect:' line"
    problems = validation.validate(documents.load_documents(text, path.name))
    assert [str(p) for p in problems] == expected


def test_templates_absent_from_the_set_are_assumed_in_the_cluster() -> None:
    """A Canary alone may reference MetricTemplates and AlertProviders that are not in the set."""
    text = (MANIFESTS / "invalid" / "unknown-template-ref.yaml").read_text()
    canary_only = text.split("---\n", 1)[1]
    assert validation.validate(documents.load_documents(canary_only, "x")) == []


def test_other_kinds_are_not_checked() -> None:
    docs = _load(MANIFESTS / "podinfo-deployment.yaml") + _load(MANIFESTS / "podinfo-hpa.yaml")
    assert not any(validation.is_checked(d) for d in docs)
    assert validation.validate(docs) == []


def test_problem_format() -> None:
    problem = validation.Problem("podinfo (Canary, test)", "spec.x", "required field missing")
    assert str(problem) == "podinfo (Canary, test): spec.x: required field missing"
    assert str(validation.Problem("d", "", "m")) == "d: m"

"""The CRDs in deploy/crds: generated from the model, structural, and accepting the corpus."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.model import crds, documents

ROOT = Path(__file__).parents[3]
CRD_DIR = ROOT / "deploy" / "crds"
MANIFESTS = ROOT / "tests" / "data" / "manifests"
FILES = sorted(CRD_DIR.glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_expected_files() -> None:
    assert [p.name for p in FILES] == sorted(
        [
            "alertproviders.flagger.app.yaml",
            "apisixpluginconfigs.apisix.apache.org.yaml",
            "apisixroutes.apisix.apache.org.yaml",
            "apisixupstreams.apisix.apache.org.yaml",
            "canaries.flagger.app.yaml",
            "metrictemplates.flagger.app.yaml",
        ]
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_are_generated_from_the_model(path: Path) -> None:
    generated = crds.all_crds()[path.name]
    assert path.read_text() == crds.render(generated), "run: python -m libs.model.crds deploy/crds"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_crd_shape(path: Path) -> None:
    crd = _load(path)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["scope"] == "Namespaced"
    versions = spec["versions"]
    assert sum(1 for v in versions if v["storage"]) == 1
    for version in versions:
        assert version["subresources"] == {"status": {}}
        _assert_structural(version["schema"]["openAPIV3Schema"], "")


def _assert_structural(schema: dict[str, Any], path: str) -> None:
    """Every node has a type unless it is int-or-string or preserves unknown fields."""
    free = schema.get("x-kubernetes-int-or-string") or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    assert "type" in schema or free, f"{path or '<root>'} has no type"
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        assert set(branch) <= {"required"}, f"{path}: value validations only in oneOf/anyOf"
    for name, child in schema.get("properties", {}).items():
        _assert_structural(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        _assert_structural(schema["additionalProperties"], f"{path}.*")
        assert "properties" not in schema
    if "items" in schema:
        _assert_structural(schema["items"], f"{path}[]")


def test_canary_printer_columns_match_flagger() -> None:
    columns = _load(CRD_DIR / "canaries.flagger.app.yaml")["spec"]["versions"][0][
        "additionalPrinterColumns"
    ]
    assert [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in columns] == [
        ("Status", ".status.phase", 0),
        ("Weight", ".status.canaryWeight", 0),
        ("Suspended", ".spec.suspend", 1),
        ("FailedChecks", ".status.failedChecks", 1),
        ("Interval", ".spec.analysis.interval", 1),
        ("Mirror", ".spec.analysis.mirror", 1),
        ("StepWeight", ".spec.analysis.stepWeight", 1),
        ("StepWeights", ".spec.analysis.stepWeights", 1),
        ("MaxWeight", ".spec.analysis.maxWeight", 1),
        ("LastTransitionTime", ".status.lastTransitionTime", 0),
    ]


# --- a tiny OpenAPI v3 checker: types, required, enum, pattern, bounds, unknown fields ---------


def _errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, int | str) and not isinstance(value, bool)
        return [] if ok else [f"{path}: not int-or-string"]
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind and not checks[kind](value):
        return [f"{path}: expected {kind}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: not in enum")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: pattern")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: minimum")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: maximum")
    for group in ("oneOf", "anyOf"):
        if group in schema:
            matches = [all(k in value for k in b["required"]) for b in schema[group]]
            if (group == "oneOf" and sum(matches) != 1) or not any(matches):
                errors.append(f"{path}: {group}")
    if kind == "object":
        errors += [
            f"{path}.{key}: required" for key in schema.get("required", []) if key not in value
        ]
        props = schema.get("properties")
        for key, item in value.items():
            if props is not None and key in props:
                errors += _errors(item, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _errors(item, schema["additionalProperties"], f"{path}.{key}")
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{key}: unknown (would be pruned)")
    if kind == "array":
        for i, item in enumerate(value):
            errors += _errors(item, schema["items"], f"{path}[{i}]")
    return errors


def _schemas() -> dict[str, dict[str, Any]]:
    result = {}
    for path in FILES:
        crd = _load(path)
        result[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"][
            "openAPIV3Schema"
        ]
    return result


def test_valid_corpus_conforms_to_the_crds() -> None:
    schemas = _schemas()
    paths = sorted((MANIFESTS / "valid").glob("*.yaml")) + sorted(MANIFESTS.glob("podinfo-*.yaml"))
    checked = 0
    for path in paths:
        for doc in documents.load_documents(path.read_text(), path.name):
            if doc.kind in schemas:
                assert _errors(doc.data, schemas[doc.kind]) == [], f"{path.name}: {doc.label}"
                checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("bad-webhook-type.yaml", "type: not in enum"),
        ("step-weight-over-100.yaml", "stepWeight: maximum"),
        ("interval-without-unit.yaml", "interval: pattern"),
        ("missing-target-ref.yaml", "targetRef: required"),
        ("typo-threshold.yaml", "treshold: unknown"),
    ],
)
def test_crd_rejects_structural_mistakes(name: str, fragment: str) -> None:
    schemas = _schemas()
    path = MANIFESTS / "invalid" / name
    doc = documents.load_documents(path.read_text(), name)[-1]
    assert any(fragment in error for error in _errors(doc.data, schemas[doc.kind or ""]))

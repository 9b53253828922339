import pytest

from libs.errors import InvalidInput
from libs.model import documents


def test_multi_document_skips_empty_and_records_lines() -> None:
    text = "---\n# only a comment\n---\nkind: A\nmetadata: {name: a}\n---\n---\nkind: B\n"
    docs = documents.load_documents(text, "f.yaml")
    assert [(d.kind, d.line, d.source) for d in docs] == [("A", 4, "f.yaml"), ("B", 8, "f.yaml")]
    assert docs[0].name == "a"
    assert docs[1].name is None


def test_timestamps_stay_strings() -> None:
    docs = documents.load_documents("metadata:\n  creationTimestamp: 2024-05-01T10:00:00Z\n", "x")
    assert docs[0].data["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"


def test_list_objects_are_expanded() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- kind: Canary\n- kind: MetricTemplate\n"
    assert [d.kind for d in documents.load_documents(text, "x")] == ["Canary", "MetricTemplate"]


def test_syntax_error_names_source_and_line() -> None:
    with pytest.raises(
        InvalidInput, match=r"^bad\.yaml:4:2: YAML syntax error: expected .,. or .\]., but got .:.$"
    ):
        documents.load_documents("a: 1\nb:\n  - [x\nc: 2\n", "bad.yaml")


def test_label() -> None:
    doc = documents.load_documents("kind: Canary\nmetadata: {name: p, namespace: t}\n", "x")[0]
    assert doc.label == "p (Canary, t)"
    unnamed = documents.load_documents("kind: Canary\n", "x")[0]
    assert unnamed.label == "<unnamed> (Canary)"

"""Multi-document YAML loading, with the source and line of every document.

Timestamps stay strings (as Kubernetes' own YAML reader keeps them), empty documents are
skipped and ``kind: List`` objects are expanded into their items.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from libs.errors import InvalidInput
from libs.model import meta


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class Document(msgspec.Struct, frozen=True, kw_only=True):
    """One object read from a source: ``data`` is the raw decoded YAML value."""

    source: str
    line: int
    data: Any
    position: int = 0

    def _get(self, *keys: str) -> str | None:
        value: Any = self.data
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value if isinstance(value, str) else None

    @property
    def api_version(self) -> str | None:
        """``apiVersion`` when it is a string."""
        return self._get("apiVersion")

    @property
    def kind(self) -> str | None:
        """``kind`` when it is a string."""
        return self._get("kind")

    @property
    def name(self) -> str | None:
        """``metadata.name`` when it is a string."""
        return self._get("metadata", "name")

    @property
    def namespace(self) -> str | None:
        """``metadata.namespace`` when it is a string."""
        return self._get("metadata", "namespace")

    @property
    def label(self) -> str:
        """``podinfo (Canary, test)``."""
        if not isinstance(self.data, dict):
            return f"{self.source} document {self.position + 1}"
        return meta.display_name(self.name, self.kind or "", self.namespace)


def load_documents(text: str, source: str) -> list[Document]:
    """Every non-empty document of a multi-document YAML text.

    Raises ``InvalidInput`` naming ``source`` and the line for a YAML syntax error.
    """
    loader = _Loader(text)
    documents: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is None:
                continue
            line = node.start_mark.line + 1
            for item in _expand(data):
                documents.append(
                    Document(source=source, line=line, data=item, position=len(documents))
                )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise InvalidInput(f"{where}: YAML syntax error: {problem}", path=source) from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: YAML syntax error: {exc}", path=source) from exc
    finally:
        loader.dispose()
    return documents


def _expand(data: Any) -> list[Any]:
    """A ``kind: List`` (``v1/List`` or ``<Kind>List``) becomes its items."""
    if (
        isinstance(data, dict)
        and isinstance(data.get("kind"), str)
        and data["kind"].endswith("List")
        and isinstance(data.get("items"), list)
        and "spec" not in data
    ):
        return [item for item in data["items"] if item is not None]
    return [data]

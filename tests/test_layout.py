"""Import rules that keep the architecture honest (checked on the source, like import-linter).

- a service imports ``libs`` and itself, never another service;
- nothing in ``libs``, ``services`` or ``cli`` imports the ``sandbox`` (dev/test infrastructure);
- the blocking platform clients are confined to their adapter modules;
- the sandbox simulates outside systems and so does not import Sluice's own code.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (REPO / "services").iterdir() if (p / "__init__.py").exists())
# modules allowed to import each confined third-party package
ADAPTERS = {
    "kubernetes": ("libs/adapters/kubernetes",),
    "prometheus_api_client": ("libs/adapters/prometheus",),
}


def imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(*roots: str) -> list[pathlib.Path]:
    return [p for root in roots for p in sorted((REPO / root).rglob("*.py"))]


def test_every_service_is_a_package_with_a_main() -> None:
    assert SERVICES == ["analyzer", "notifier", "traffic_shifter", "watcher", "webhook_runner"]
    for name in SERVICES:
        assert (REPO / "services" / name / "__main__.py").exists()


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_never_imports_another_service(service: str) -> None:
    for path in sources(f"services/{service}"):
        for module in imports(path):
            if module.startswith("services."):
                assert module.split(".")[1] == service, f"{path.relative_to(REPO)} imports {module}"


def test_product_code_never_imports_the_sandbox() -> None:
    for path in sources("libs", "services", "cli"):
        bad = {m for m in imports(path) if m == "sandbox" or m.startswith("sandbox.")}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_blocking_clients_stay_in_their_adapters() -> None:
    for path in sources("libs", "services", "cli"):
        rel = path.relative_to(REPO).as_posix()
        for module in imports(path):
            top = module.split(".")[0]
            if top in ADAPTERS:
                assert rel.startswith(ADAPTERS[top]), f"{rel} imports {module}"


def test_the_sandbox_does_not_depend_on_sluice() -> None:
    for path in sources("sandbox"):
        bad = {m for m in imports(path) if m.split(".")[0] in ("libs", "services", "cli")}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"

"""requirements.lock must keep up with pyproject.toml.

Every machine and CI installs the exact versions in ``requirements.lock`` (``make setup``); only
``make lock`` changes them. A dependency added to pyproject.toml, or a specifier raised there,
without a ``make lock`` afterwards would be silently missing or wrong: these tests catch it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import tomllib
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO = pathlib.Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
PYPROJECT = REPO / "pyproject.toml"
# what the lock is resolved for (see LOCK_PYTHON and LOCK_PLATFORM in the Makefile)
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(?P<version>[^\s;\\]+)"
)
FIX = "run `make lock` (or `make lock LOCK_FLAGS=` to keep the other pins) and commit requirements.lock"


@dataclasses.dataclass
class Entry:
    version: Version
    hashes: int


def parse_lock(text: str) -> dict[NormalizedName, Entry]:
    """The pinned packages of a pip requirements file (continuation lines joined)."""
    entries: dict[NormalizedName, Entry] = {}
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if match is None:
            raise AssertionError(f"requirements.lock: not a `name==version` pin: {line!r}")
        entries[canonicalize_name(match["name"])] = Entry(
            Version(match["version"]), line.count("--hash=")
        )
    return entries


def declared(pyproject: dict[str, Any]) -> list[tuple[str, Requirement]]:
    """Runtime dependencies and the dev extra, as (where, requirement)."""
    project = pyproject["project"]
    dev = project.get("optional-dependencies", {}).get("dev", [])
    return [("dependencies", Requirement(r)) for r in project.get("dependencies", [])] + [
        ("optional-dependencies.dev", Requirement(r)) for r in dev
    ]


def lock_problems(pyproject: dict[str, Any], lock_text: str) -> list[str]:
    locked = parse_lock(lock_text)
    problems = []
    for where, req in declared(pyproject):
        if req.marker is not None and not req.marker.evaluate(TARGET):
            continue
        entry = locked.get(canonicalize_name(req.name))
        if entry is None:
            problems.append(f"{req} ({where} in pyproject.toml) is not in requirements.lock")
        elif not req.specifier.contains(entry.version, prereleases=True):
            problems.append(
                f"{req} ({where} in pyproject.toml) but requirements.lock pins {entry.version}"
            )
    return problems


def test_the_lock_has_every_dependency_of_pyproject_at_an_allowed_version() -> None:
    pyproject = tomllib.loads(PYPROJECT.read_text())
    problems = lock_problems(pyproject, LOCK.read_text())
    assert not problems, (
        "requirements.lock is out of date:\n  " + "\n  ".join(problems) + f"\n{FIX}"
    )


def test_every_pin_has_hashes_and_the_lock_says_how_it_was_made() -> None:
    text = LOCK.read_text()
    locked = parse_lock(text)
    assert locked, "requirements.lock pins nothing"
    unhashed = sorted(name for name, entry in locked.items() if entry.hashes == 0)
    assert not unhashed, f"pins without --hash (pip --require-hashes refuses them): {unhashed}"
    assert "make lock" in text.split("\n", 3)[1], (
        "the header of requirements.lock names `make lock`"
    )
    assert "sluice" not in locked, "the project itself is installed by `pip install -e .`"


def test_a_missing_dependency_and_a_pin_outside_the_specifier_are_reported() -> None:
    pyproject = {
        "project": {
            "dependencies": ["nats-py>=3", "msgspec>=0.18", "uvloop; sys_platform == 'win32'"],
            "optional-dependencies": {"dev": ["PyTest>=8", "hypothesis"]},
        }
    }
    lock = (
        "# header\n"
        "nats-py==2.16.0 \\\n    --hash=sha256:00\n    # via sluice\n"
        "msgspec==0.23.0 --hash=sha256:11\n"
        "pytest==9.2.0 --hash=sha256:22\n"
    )
    assert lock_problems(pyproject, lock) == [
        "nats-py>=3 (dependencies in pyproject.toml) but requirements.lock pins 2.16.0",
        "hypothesis (optional-dependencies.dev in pyproject.toml) is not in requirements.lock",
    ]

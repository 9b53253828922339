"""Write the runtime part of requirements.lock: ``python runtime-lock.py PYPROJECT LOCK OUT``.

requirements.lock is one lock for the runtime *and* the dev extra (pytest, ruff, mypy,
hadolint, ...). The container image (Dockerfile, builder stage) installs only the packages of
pyproject's [project.dependencies] and everything the lock says they come "via", transitively,
each block copied unchanged with its hashes, so ``pip install --require-hashes --no-deps``
still checks every file and ``pip check`` fails the build if a dependency was missed.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def runtime_blocks(pyproject: str, lock: str) -> dict[str, str]:
    """Lock blocks (``name==version`` with hashes and ``# via``) the runtime needs, by name."""
    wanted = {_name(dep) for dep in tomllib.loads(pyproject)["project"]["dependencies"]}
    blocks: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=[a-z0-9])", lock):
        if "==" not in block.split("\n", 1)[0]:
            continue  # the header
        name = block.split("==", 1)[0].strip()
        parents = set()
        for line in block.splitlines():
            text = line.strip()
            if not text.startswith("#"):
                continue
            text = text.lstrip("#").strip()
            if text.startswith("via"):
                text = text[3:].strip()
            if text and not text.startswith("sluice"):
                parents.add(text.split()[0])
        blocks[name] = (block.rstrip(), parents)
    missing = wanted - blocks.keys()
    if missing:
        raise SystemExit(f"requirements.lock lacks {', '.join(sorted(missing))}")
    runtime = set(wanted)
    grown = True
    while grown:
        grown = False
        for name, (_, parents) in blocks.items():
            if name not in runtime and parents & runtime:
                runtime.add(name)
                grown = True
    return {name: blocks[name][0] for name in sorted(runtime)}


def main(argv: list[str]) -> int:
    pyproject, lock, out = argv
    with open(pyproject, encoding="utf-8") as f, open(lock, encoding="utf-8") as g:
        blocks = runtime_blocks(f.read(), g.read())
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(blocks.values()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

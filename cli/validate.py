"""``sluice validate -f FILE|DIR|- ...``: check Flagger manifests before they reach a cluster.

Exit status: 0 when every checked document is valid, 1 when any problem was found (each
printed on its own line to stdout), 2 for usage errors and unreadable files.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from libs.errors import InvalidInput
from libs.model import documents, validation

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
YAML_SUFFIXES = (".yaml", ".yml")


class UnreadableInput(Exception):
    """A file named on the command line cannot be read."""


def register(subparsers: Any) -> None:
    """Add the ``validate`` subcommand."""
    parser = subparsers.add_parser(
        "validate",
        help="validate Canary, MetricTemplate, AlertProvider and ApisixRoute manifests",
        description=(
            "Validate Flagger Canary, MetricTemplate and AlertProvider documents (and "
            "ApisixRoutes) in YAML files. Other kinds are skipped. Every problem is printed, "
            "one per line."
        ),
    )
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="a YAML file, a directory (walked for *.yaml, *.yml) or - for stdin; repeatable",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate the named inputs; print problems and return the exit status."""
    try:
        sources = [source for name in args.files for source in _expand(name)]
        texts = [(source, _read(source)) for source in sources]
    except UnreadableInput as exc:
        print(f"sluice validate: {exc}", file=sys.stderr)
        return EXIT_USAGE

    docs: list[documents.Document] = []
    syntax_errors: list[str] = []
    for source, text in texts:
        try:
            docs.extend(documents.load_documents(text, source))
        except InvalidInput as exc:
            syntax_errors.append(exc.message)

    checked = [doc for doc in docs if validation.is_checked(doc)]
    skipped = len(docs) - len(checked)
    problems = validation.validate(docs)
    for line in syntax_errors:
        print(line)
    for problem in problems:
        print(problem)

    skipped_note = f"; skipped {skipped} document{_s(skipped)} of other kinds" if skipped else ""
    if problems or syntax_errors:
        bad = len({p.document for p in problems}) + len(syntax_errors)
        count = len(problems) + len(syntax_errors)
        print(
            f"{count} problem{_s(count)} in {bad} of {len(checked) + len(syntax_errors)} "
            f"checked document{_s(len(checked))}{skipped_note}",
            file=sys.stderr,
        )
        return EXIT_INVALID
    kinds = Counter(doc.kind or "?" for doc in checked)
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    print(
        f"OK: {len(checked)} document{_s(len(checked))} valid"
        + (f" ({detail})" if detail else "")
        + skipped_note
    )
    return EXIT_OK


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _expand(name: str) -> list[str]:
    """``-`` stays stdin; a directory becomes its YAML files (sorted); a file stays itself."""
    if name == "-":
        return ["-"]
    path = Path(name)
    if path.is_dir():
        return [
            str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in YAML_SUFFIXES
        ]
    if not path.exists():
        raise UnreadableInput(f"cannot read {name}: no such file or directory")
    return [name]


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UnreadableInput(f"cannot read {source}: {reason}") from exc

"""``sluice validate`` and ``sluice version`` run as the installed console script."""

import subprocess
import sys
from pathlib import Path

import pytest

SLUICE = str(Path(sys.executable).parent / "sluice")
MANIFESTS = Path(__file__).parents[1] / "data" / "manifests"
SEED = MANIFESTS / "podinfo-canary.yaml"


def sluice(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SLUICE, *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


def test_seed_canary_is_valid() -> None:
    result = sluice("validate", "-f", str(SEED))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "OK: 1 document valid (1 Canary)\n"


def test_other_kinds_are_skipped_and_counted() -> None:
    files = ["podinfo-deployment.yaml", "podinfo-hpa.yaml", "podinfo-apisixroute.yaml"]
    args = [arg for name in files for arg in ("-f", str(MANIFESTS / name))]
    result = sluice("validate", "-f", str(SEED), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        "OK: 2 documents valid (1 ApisixRoute, 1 Canary); skipped 2 documents of other kinds\n"
    )


def test_directory_is_walked() -> None:
    result = sluice("validate", "-f", str(MANIFESTS / "valid"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")


def test_broken_manifest_prints_every_problem() -> None:
    path = MANIFESTS / "invalid" / "many-problems.yaml"
    expected = [
        line.removeprefix("# expect: ")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]
    result = sluice("validate", "-f", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == expected
    assert "6 problems in 1 of 1 checked document" in result.stderr


def test_stdin() -> None:
    text = SEED.read_text().replace("interval: 10s", 'interval: "10"')
    result = sluice("validate", "-f", "-", stdin=text)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        'podinfo (Canary, test): spec.analysis.interval: expected a duration like 30s or 1m, got "10"'
    ]
    ok = sluice("validate", "-f", "-", stdin=SEED.read_text())
    assert ok.returncode == 0


def test_yaml_syntax_error_names_the_source() -> None:
    result = sluice("validate", "-f", "-", stdin="kind: Canary\nspec: [\n")
    assert result.returncode == 1
    assert result.stdout.startswith("-:3:1: YAML syntax error: ")


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = sluice("validate", "-f", str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["validate"], [], ["bogus"]])
def test_usage_errors(args: list[str]) -> None:
    assert sluice(*args).returncode == 2


def test_version() -> None:
    from importlib.metadata import version

    result = sluice("version")
    assert result.returncode == 0
    assert result.stdout == f"sluice {version('sluice')}\n"


def test_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main

    assert main.main(["validate", "-f", str(SEED)]) == 0
    assert capsys.readouterr().out.startswith("OK: 1 document valid")

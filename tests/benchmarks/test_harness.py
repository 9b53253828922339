"""The benchmark harness's statistics, /proc sampling and output (no network, no processes)."""

from __future__ import annotations

import json
import os
import pathlib
import random

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import harness


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 0, 7.0),
        ([7.0], 99, 7.0),
        ([1.0, 2.0], 50, 1.5),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 90, 4.6),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 100, 5.0),
        ([float(i) for i in range(1, 101)], 99, 99.01),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert harness.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_or_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        harness.percentile([], 50)
    with pytest.raises(ValueError, match=r"expected 0 <= q <= 100, got 101"):
        harness.percentile([1.0], 101)


def test_summary_sorts_and_reports_every_statistic() -> None:
    values = [float(i) for i in range(1000, 0, -1)]  # 1000 .. 1, reversed
    random.Random(7).shuffle(values)
    stats = harness.summary(values)
    assert stats["n"] == 1000
    assert stats["min"] == 1.0
    assert stats["max"] == 1000.0
    assert stats["mean"] == pytest.approx(500.5)
    assert stats["p50"] == pytest.approx(500.5)
    assert stats["p90"] == pytest.approx(900.1)
    assert stats["p99"] == pytest.approx(990.01)


def test_summary_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        harness.summary([])


def test_ms_formats_seconds_as_milliseconds() -> None:
    stats = harness.summary([0.2, 0.21, 0.48])
    assert harness.ms(stats) == "p50 210 ms · p99 475 ms"
    assert harness.ms(harness.summary([0.000473])) == "p50 0.473 ms · p99 0.473 ms"


def test_process_stats_sees_this_process() -> None:
    sample = harness.ProcessStats(os.getpid()).sample()
    assert sample.rss_mb > 1
    assert sample.cpu_s > 0


def test_process_stats_of_a_gone_process_is_an_error() -> None:
    gone = max(int(p.name) for p in pathlib.Path("/proc").iterdir() if p.name.isdigit()) + 100000
    with pytest.raises(harness.BenchmarkError, match=f"process {gone} is gone"):
        harness.ProcessStats(gone, children=False).sample()


def test_json_has_the_machine_and_every_figure(tmp_path: pathlib.Path) -> None:
    figure = harness.Figure(
        key="k",
        title="a figure",
        value="p50 1 ms · p99 2 ms",
        target="≤ 1 s",
        met=True,
        conditions="c",
        data={"x": [1, 2]},
    )
    path = tmp_path / "out" / "r.json"
    harness.write_json([figure], path)
    body = json.loads(path.read_text())
    assert body["machine"]["cores"] == os.cpu_count()
    assert body["machine"]["nats_server"].startswith("v")
    assert body["figures"] == [
        {
            "key": "k",
            "title": "a figure",
            "value": "p50 1 ms · p99 2 ms",
            "target": "≤ 1 s",
            "met": True,
            "conditions": "c",
            "stand_ins": [],
            "data": {"x": [1, 2]},
        }
    ]


def test_only_selects_modules_by_figure_key_or_name() -> None:
    args = bench_main.parse_args(["--only", "idle_rss", "analyzer_capacity", "--quick"])
    assert args.quick
    assert bench_main.selected(args) == ["analyzer_load", "idle"]
    assert bench_main.selected(bench_main.parse_args(["--only", "bus"])) == ["bus"]


def test_only_refuses_an_unknown_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_main.parse_args(["--only", "nonsense"])
    assert "--only: unknown nonsense" in capsys.readouterr().err

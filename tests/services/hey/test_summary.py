"""``format_summary`` against hey's real output, section by section, and the CSV lines.

The samples are hey's output as users pasted it into rakyll/hey issues. A layout "shape"
replaces each number by its format (``<4dp>`` for ``%4.4f``, ``<int>``), each bar by ``<bar>``
and each quoted URL by ``<url>``, so the table compares headings, indentation, tabs, blank
lines, units and number formats, not the measurements. The one expected difference is the
"req write" line, which Sluice cannot measure (see ``summary``'s docstring).
"""

from __future__ import annotations

import math
import random
import re

import pytest

from services.webhook_runner.hey import recording, summary

# rakyll/hey#266: `hey -n 10 -c 5 http://lesichkov.co.uk` (no body bytes; fewer than 100
# responses, so hey prints "0% in 0.0000 secs" for the percentiles it did not reach)
HEY_N10 = """
Summary:
  Total:\t1.5550 secs
  Slowest:\t0.8376 secs
  Fastest:\t0.7170 secs
  Average:\t0.7772 secs
  Requests/sec:\t6.4310
\x20\x20

Response time histogram:
  0.717 [1]\t|■■■■■■■■
  0.729 [4]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.741 [0]\t|
  0.753 [0]\t|
  0.765 [0]\t|
  0.777 [0]\t|
  0.789 [0]\t|
  0.801 [0]\t|
  0.813 [0]\t|
  0.826 [0]\t|
  0.838 [5]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■


Latency distribution:
  10% in 0.7172 secs
  25% in 0.7175 secs
  50% in 0.8364 secs
  75% in 0.8374 secs
  90% in 0.8376 secs
  0% in 0.0000 secs
  0% in 0.0000 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0231 secs, 0.7170 secs, 0.8376 secs
  DNS-lookup:\t0.0003 secs, 0.0000 secs, 0.0010 secs
  req write:\t0.0001 secs, 0.0000 secs, 0.0001 secs
  resp wait:\t0.6989 secs, 0.6669 secs, 0.7363 secs
  resp read:\t0.0011 secs, 0.0008 secs, 0.0014 secs

Status code distribution:
  [200]\t10 responses
"""

# rakyll/hey#283: `hey -n 500 -c 10 ... -d '{"memberId":"1800"}' http://localhost:30001/path`
# (with body bytes; up to the status codes: the error lines are not reproduced here)
HEY_BYTES = """
Summary:
  Total:\t20.6886 secs
  Slowest:\t0.6256 secs
  Fastest:\t0.1444 secs
  Average:\t0.3030 secs
  Requests/sec:\t24.1679

  Total data:\t227000 bytes
  Size/request:\t908 bytes

Response time histogram:
  0.144 [1]\t|■
  0.193 [37]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.241 [55]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.289 [38]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.337 [31]\t|■■■■■■■■■■■■■■■■■■■■■■■
  0.385 [18]\t|■■■■■■■■■■■■■
  0.433 [35]\t|■■■■■■■■■■■■■■■■■■■■■■■■■
  0.481 [26]\t|■■■■■■■■■■■■■■■■■■■
  0.529 [4]\t|■■■
  0.577 [1]\t|■
  0.626 [4]\t|■■■


Latency distribution:
  10% in 0.1734 secs
  25% in 0.2129 secs
  50% in 0.2795 secs
  75% in 0.4011 secs
  90% in 0.4465 secs
  95% in 0.4728 secs
  99% in 0.6213 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0009 secs, 0.1444 secs, 0.6256 secs
  DNS-lookup:\t0.0006 secs, 0.0000 secs, 0.0013 secs
  req write:\t0.0000 secs, 0.0000 secs, 0.0004 secs
  resp wait:\t0.3020 secs, 0.1435 secs, 0.6245 secs
  resp read:\t0.0000 secs, 0.0000 secs, 0.0001 secs

Status code distribution:
  [200]\t250 responses
"""

# rakyll/hey#328: every request refused. The rendering dropped the indentation, which
# is restored here as hey's print.go template writes it (two spaces, a tab after the label).
REFUSED_URL = "http://localhost:3000/users/whoLikedPostsByAuthorsActiveRecord?authors=user-1"
REFUSED = f'Get "{REFUSED_URL}": dial tcp 127.0.0.1:3000: connect: connection refused'
HEY_REFUSED = f"""
Summary:
  Total:\t0.0170 secs
  Slowest:\t0.0000 secs
  Fastest:\t0.0000 secs
  Average:\tNaN secs
  Requests/sec:\t11770.1513
\x20\x20

Response time histogram:


Latency distribution:

Details (average, fastest, slowest):
  DNS+dialup:\tNaN secs, 0.0000 secs, 0.0000 secs
  DNS-lookup:\tNaN secs, 0.0000 secs, 0.0000 secs
  req write:\tNaN secs, 0.0000 secs, 0.0000 secs
  resp wait:\tNaN secs, 0.0000 secs, 0.0000 secs
  resp read:\tNaN secs, 0.0000 secs, 0.0000 secs

Status code distribution:

Error distribution:
  [200]\t{REFUSED}
"""

HEADINGS = (
    "Summary:",
    "Response time histogram:",
    "Latency distribution:",
    "Details (average, fastest, slowest):",
    "Status code distribution:",
    "Error distribution:",
)


def report_of(
    latencies: list[float],
    *,
    total_s: float,
    size: int = 0,
    errors: tuple[tuple[str, int], ...] = (),
) -> recording.Report:
    recorder = recording.Recorder()
    for latency in latencies:
        recorder.response(latency, 0.0, 0.0, latency, 0.0, 200, size)
    for message, count in errors:
        for _ in range(count):
            recorder.error(message)
    return recorder.report(total_s, stopped=False)


def spread(n: int, fastest: float, slowest: float) -> list[float]:
    return [fastest + (slowest - fastest) * i / (n - 1) for i in range(n)]


CASES = {
    "n10": (
        HEY_N10,
        report_of(
            [0.7170, 0.7172, 0.7175, 0.7180, 0.7190, 0.8364, 0.8370, 0.8374, 0.8375, 0.8376],
            total_s=1.5550,
        ),
    ),
    "bytes": (HEY_BYTES, report_of(spread(250, 0.1444, 0.6256), total_s=20.6886, size=908)),
    "refused": (HEY_REFUSED, report_of([], total_s=0.0170, errors=((REFUSED, 200),))),
}


def shape(line: str) -> str:
    """A line's layout: numbers by format, bars, URLs and trailing blanks taken out."""
    line = line.rstrip()  # pasted samples lose trailing blanks ("  " after Requests/sec)
    line = re.sub(r'"[^"]*"', '"<url>"', line)
    line = re.sub(r"\|■*$", "|<bar>", line)
    line = re.sub(r"\d+\.(\d+)", lambda m: f"<{len(m.group(1))}dp>", line)
    return re.sub(r"\d+", "<int>", line)


def sections(text: str) -> dict[str, list[str]]:
    """Each heading → the shapes of its lines up to the next heading; "" → what precedes."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.rstrip("\n").split("\n"):
        if line in HEADINGS:
            current = line
            found[current] = []
        else:
            found[current].append(shape(line))
    return found


@pytest.mark.parametrize("heading", ["", *HEADINGS])
@pytest.mark.parametrize("case", list(CASES))
def test_each_section_is_laid_out_as_hey_lays_it_out(case: str, heading: str) -> None:
    sample, report = CASES[case]
    theirs = sections(sample).get(heading)
    if heading == "Details (average, fastest, slowest):" and theirs is not None:
        theirs = [line for line in theirs if not line.startswith("  req write:")]
    assert sections(summary.format_summary(report)).get(heading) == theirs


def test_the_whole_text_exactly() -> None:
    """Blank lines, tabs and the trailing newlines of hey's template, character for character."""
    recorder = recording.Recorder()
    recorder.response(0.1, 0.01, 0.0, 0.08, 0.01, 200, 10)
    recorder.response(0.2, 0.0, 0.0, 0.19, 0.01, 503, 10)
    recorder.error('Get "http://a/": EOF')
    text = summary.format_summary(recorder.report(0.5, stopped=False))
    bars = "■" * 40
    assert text == (
        "\nSummary:\n"
        "  Total:\t0.5000 secs\n"
        "  Slowest:\t0.2000 secs\n"
        "  Fastest:\t0.1000 secs\n"
        "  Average:\t0.1500 secs\n"
        "  Requests/sec:\t6.0000\n"
        "  \n"
        "  Total data:\t20 bytes\n"
        "  Size/request:\t10 bytes\n"
        "\n"
        "Response time histogram:\n"
        f"  0.100 [1]\t|{bars}\n"
        "  0.110 [0]\t|\n"
        "  0.120 [0]\t|\n"
        "  0.130 [0]\t|\n"
        "  0.140 [0]\t|\n"
        "  0.150 [0]\t|\n"
        "  0.160 [0]\t|\n"
        "  0.170 [0]\t|\n"
        "  0.180 [0]\t|\n"
        "  0.190 [0]\t|\n"
        f"  0.200 [1]\t|{bars}\n"
        "\n"
        "\n"
        "Latency distribution:\n"
        "  10% in 0.2000 secs\n"
        "  25% in 0.2000 secs\n"
        "  50% in 0.2000 secs\n"
        "  75% in 0.2000 secs\n"
        "  90% in 0.2000 secs\n"
        "  95% in 0.2000 secs\n"
        "  99% in 0.2000 secs\n"
        "\n"
        "Details (average, fastest, slowest):\n"
        "  DNS+dialup:\t0.0050 secs, 0.0000 secs, 0.0100 secs\n"
        "  DNS-lookup:\t0.0000 secs, 0.0000 secs, 0.0000 secs\n"
        "  resp wait:\t0.1350 secs, 0.0800 secs, 0.1900 secs\n"
        "  resp read:\t0.0100 secs, 0.0100 secs, 0.0100 secs\n"
        "\n"
        "Status code distribution:\n"
        "  [200]\t1 responses\n"
        "  [503]\t1 responses\n"
        "\n"
        "Error distribution:\n"
        '  [1]\tGet "http://a/": EOF\n'
        "\n"
    )


def test_without_errors_there_is_no_error_section() -> None:
    text = summary.format_summary(report_of([0.1, 0.2], total_s=1.0))
    assert "Error distribution" not in text
    assert text.endswith("  [200]\t2 responses\n\n\n\n")  # the template's, then print's


# ----------------------------------------------------------------------------- hey's arithmetic


def hey_percentiles(ordered: list[float]) -> list[tuple[int, float]]:
    """What hey computes: walk the sorted latencies, advancing one percentile at a time."""
    wanted = [10, 25, 50, 75, 90, 95, 99]
    found: list[tuple[int, float]] = []
    for i, latency in enumerate(ordered):
        if len(found) < len(wanted) and i * 100 // len(ordered) >= wanted[len(found)]:
            found.append((wanted[len(found)], latency))
    return found


def hey_histogram(ordered: list[float]) -> list[int]:
    """What hey counts: each latency in the first of 11 marks it does not exceed."""
    fastest, slowest = ordered[0], ordered[-1]
    step = (slowest - fastest) / 10
    marks = [fastest + step * i for i in range(10)] + [slowest]
    counts = [0] * 11
    bucket = 0
    for latency in ordered:
        while latency > marks[bucket]:
            bucket += 1
        counts[bucket] += 1
    return counts


@pytest.mark.parametrize("n", [100, 101, 250, 1000, 4321])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_and_histogram_match_hey_from_100_responses(n: int, seed: int) -> None:
    rng = random.Random(seed)
    ordered = sorted(rng.lognormvariate(-4, 0.5) for _ in range(n))
    assert summary.percentiles(ordered) == hey_percentiles(ordered)
    buckets = summary.histogram(ordered, ordered[0], ordered[-1])
    assert [count for _, count in buckets] == hey_histogram(ordered)
    assert buckets[0][0] == ordered[0]
    assert buckets[-1][0] == ordered[-1]


def test_percentiles_below_100_responses_name_a_real_latency() -> None:
    ordered = [0.1, 0.2, 0.3]
    assert summary.percentiles(ordered) == [  # hey: (10, 0.2), (25, 0.3), then "0%" lines
        (10, 0.2),
        (25, 0.2),
        (50, 0.3),
        (75, 0.3),
        (90, 0.3),
        (95, 0.3),
        (99, 0.3),
    ]
    assert summary.percentiles([]) == []


def test_all_latencies_equal() -> None:
    buckets = summary.histogram([0.5] * 7, 0.5, 0.5)
    assert [count for _, count in buckets] == [7] + [0] * 10


def test_csv_line() -> None:
    assert summary.csv_line(0.12345, 0.001, 0.0, 0.1, 0.02, 200, 1.5) == (
        "0.1235,0.0010,0.0000,NaN,0.1000,0.0200,200,1.5000"
    )
    assert summary.CSV_HEADER.split(",") == [
        "response-time",
        "DNS+dialup",
        "DNS",
        "Request-write",
        "Response-delay",
        "Response-read",
        "status-code",
        "offset",
    ]


def test_go_spellings_of_special_numbers() -> None:
    text = summary.format_summary(report_of([], total_s=0.0))
    assert "  Average:\tNaN secs\n" in text
    assert "  Requests/sec:\t0.0000\n" in text
    assert math.isnan(report_of([], total_s=1.0).average_s)

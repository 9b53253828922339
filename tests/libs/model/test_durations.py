import pytest

from libs.model import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2h45m", 9900.0),
        ("-1m", -60.0),
        (".5s", 0.5),
        ("1us", 1e-6),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert durations.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1m 30s", "m1", "1.s.", "--1s", "1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        durations.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("10s", True),
        ("1m", True),
        ("1m30s", True),
        ("500ms", True),  # Flagger's pattern is a prefix match: "500m" then "s"
        ("10", False),
        ("1h", False),
        ("s", False),
        ("-1m", False),
        ("10x", False),
    ],
)
def test_is_interval(text: str, ok: bool) -> None:
    assert durations.is_interval(text) is ok


def test_is_interval_rejects_non_strings() -> None:
    assert not durations.is_interval(10)
    assert not durations.is_duration(None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, 60.0), ("", 60.0), ("bogus", 60.0), ("5s", 10.0), ("10s", 10.0), ("2m", 120.0)],
)
def test_interval_seconds_defaults_and_clamps(text: str | None, expected: float) -> None:
    assert durations.interval_seconds(text, default=60.0, minimum=10.0) == expected

"""The load generator against local HTTP servers: counts, concurrency, rate, request shape,
timeouts, redirects, keep-alive, proxies, stopping, errors, CSV and metrics.

The rate test is the only one whose outcome depends on time, and it checks a count
(``-z 3s -q 10 -c 2`` sends 60 requests, within 5 %), never how long something took.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import pathlib
import re

import prometheus_client as prom
import pytest

from services.webhook_runner.hey import generating, parsing, recording, summary
from tests.services.hey.conftest import BODY, Proxy, Target

pytestmark = pytest.mark.integration

REFUSED = "http://127.0.0.1:1/"  # nothing listens on port 1: connections are refused at once
CANARY = "podinfo.test"
STOP_TIMEOUT_S = 5.0  # a stopped run must end well within this


def options(line: str) -> parsing.Options:
    return parsing.parse(line)


async def test_n_is_split_evenly_across_the_workers(target: Target) -> None:
    report = await generating.run(options(f"hey -n 200 -c 50 {target.url()}"))
    assert len(target.seen) == 200
    assert (report.requests, report.responses, dict(report.status_codes)) == (200, 200, {200: 200})
    assert report.bytes_total == 200 * len(BODY)
    assert len(report.latencies) == 200
    assert not report.stopped


async def test_the_remainder_of_n_over_c_is_not_sent_as_in_hey(target: Target) -> None:
    report = await generating.run(options(f"hey -n 10 -c 3 {target.url()}"))
    assert len(target.seen) == report.requests == 9


async def test_the_server_sees_c_requests_at_once_and_never_more(target: Target) -> None:
    target.barrier = 10
    report = await generating.run(options(f"hey -n 30 -c 10 {target.url('/barrier')}"))
    assert report.status_codes == {200: 30}
    assert target.max_in_flight == 10


async def test_q_is_a_rate_per_worker(target: Target) -> None:
    report = await generating.run(options(f"hey -z 3s -q 10 -c 2 {target.url()}"))
    assert 57 <= len(target.seen) <= 63  # 2 workers x 10 req/s x 3 s = 60, within 5 %
    assert report.requests == len(target.seen)


async def test_method_body_and_headers_arrive(target: Target) -> None:
    line = (
        "hey -n 1 -c 1 -m post -d 'hello there' -T application/json -A application/xml "
        "-H 'X-Trace: abc' -H 'X-Empty-Looking:  spaced' -a user:secret "
        f"-host app.example.com -U probe {target.url('/api/info')}"
    )
    report = await generating.run(options(line))
    assert report.status_codes == {200: 1}
    [seen] = target.seen
    assert (seen.method, seen.path, seen.body) == ("POST", "/api/info", b"hello there")
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/xml"
    assert seen.headers["X-Trace"] == "abc"
    assert seen.headers["Host"] == "app.example.com"
    assert seen.headers["User-Agent"] == "probe hey/0.0.1"
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()
    assert seen.headers["Accept-Encoding"] == "gzip"


async def test_defaults_send_what_hey_sends(target: Target) -> None:
    await generating.run(options(f"hey -n 1 -c 1 {target.url()}"))
    [seen] = target.seen
    assert seen.method == "GET"
    assert seen.body == b""
    assert seen.headers["Content-Type"] == "text/html"
    assert seen.headers["User-Agent"] == "hey/0.0.1"
    assert seen.headers["Host"] == target.base.removeprefix("http://")
    assert "Accept" not in seen.headers  # Go sends none unless asked


async def test_a_body_file_from_the_data_directory(target: Target, tmp_path: pathlib.Path) -> None:
    (tmp_path / "order.json").write_bytes(b'{"id": 1}')
    await generating.run(
        options(f"hey -n 2 -c 1 -m PUT -D order.json {target.url()}"), data_dir=tmp_path
    )
    assert [s.body for s in target.seen] == [b'{"id": 1}', b'{"id": 1}']


async def test_timeouts_are_counted_as_errors(target: Target) -> None:
    hanging = dataclasses.replace(options(f"hey -n 2 -c 2 {target.url('/hang')}"), timeout_s=0.2)
    report = await generating.run(hanging)
    assert report.responses == 0
    assert report.errors == {
        f'Get "{target.url("/hang")}": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)": 2
    }


async def test_redirects_are_followed_unless_disabled(target: Target) -> None:
    followed = await generating.run(options(f"hey -n 4 -c 2 {target.url('/redirect')}"))
    assert followed.status_codes == {200: 4}
    assert target.count("/") == 4

    kept = await generating.run(
        options(f"hey -n 4 -c 2 -disable-redirects {target.url('/redirect')}")
    )
    assert kept.status_codes == {302: 4}
    assert target.count("/") == 4  # no more than before


async def test_keepalive_reuses_connections_unless_disabled(target: Target) -> None:
    await generating.run(options(f"hey -n 20 -c 2 {target.url()}"))
    assert len({s.peer_port for s in target.seen}) <= 2
    assert all("Connection" not in s.headers for s in target.seen)

    target.seen.clear()
    await generating.run(options(f"hey -n 20 -c 2 -disable-keepalive {target.url()}"))
    assert len({s.peer_port for s in target.seen}) == 20  # a new connection every time
    assert all(s.headers.get("Connection") == "close" for s in target.seen)


async def test_compression_is_asked_for_unless_disabled(target: Target) -> None:
    expanded = len(BODY) * 100
    report = await generating.run(options(f"hey -n 2 -c 1 {target.url('/gzip')}"))
    assert all(s.headers["Accept-Encoding"] == "gzip" for s in target.seen)
    assert report.bytes_total == 2 * expanded  # decompressed, as Go's transport does

    target.seen.clear()
    report = await generating.run(
        options(f"hey -n 2 -c 1 -disable-compression {target.url('/gzip')}")
    )
    assert all("Accept-Encoding" not in s.headers for s in target.seen)
    assert report.bytes_total == 2 * expanded  # the server sent it plain

    target.seen.clear()
    report = await generating.run(
        options(f"hey -n 2 -c 1 -H 'Accept-Encoding: gzip' {target.url('/gzip')}")
    )
    assert report.bytes_total < 2 * expanded  # asked by the user: left compressed, as in Go


async def test_x_sends_every_request_through_the_proxy(target: Target, proxy: Proxy) -> None:
    report = await generating.run(options(f"hey -n 4 -c 2 -x {proxy.address} {target.url('/a')}"))
    assert report.status_codes == {200: 4}
    assert proxy.targets == [target.url("/a")] * 4
    assert target.seen == []


async def test_http_proxy_from_the_environment(
    target: Target, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.address}")
    await generating.run(options(f"hey -n 2 -c 1 {target.url('/a')}"))
    assert proxy.targets == [target.url("/a")] * 2
    assert target.seen == []

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    await generating.run(options(f"hey -n 2 -c 1 {target.url('/a')}"))
    assert len(proxy.targets) == 2
    assert target.count("/a") == 2

    await generating.run(options(f"hey -n 2 -c 1 -x {proxy.address} {target.url('/a')}"))
    assert len(proxy.targets) == 4  # -x wins over NO_PROXY


async def test_stop_ends_a_one_hour_run_promptly(target: Target) -> None:
    target.notify_at = 5
    stop = asyncio.Event()
    registry = prom.CollectorRegistry()
    metrics = recording.Metrics(registry)
    run = asyncio.create_task(
        generating.run(
            options(f"hey -z 1h -c 2 {target.url()}"), stop=stop, metrics=metrics, canary=CANARY
        )
    )
    await asyncio.wait_for(target.reached.wait(), STOP_TIMEOUT_S)
    assert registry.get_sample_value("sluice_loadtest_running", {"canary": CANARY}) == 1
    stop.set()
    report = await asyncio.wait_for(run, STOP_TIMEOUT_S)
    assert report.stopped
    assert report.requests >= 3  # at least the ones answered before the fifth arrived
    assert (
        registry.get_sample_value(
            "sluice_loadtest_runs_total", {"canary": CANARY, "result": "stopped"}
        )
        == 1
    )
    assert registry.get_sample_value("sluice_loadtest_running", {"canary": CANARY}) == 0


async def test_stop_abandons_requests_under_way(target: Target) -> None:
    target.notify_at = 3
    stop = asyncio.Event()
    run = asyncio.create_task(
        generating.run(options(f"hey -z 1h -c 3 -t 0 {target.url('/hang')}"), stop=stop)
    )
    await asyncio.wait_for(target.reached.wait(), STOP_TIMEOUT_S)
    stop.set()
    report = await asyncio.wait_for(run, STOP_TIMEOUT_S)
    assert report.stopped
    assert report.requests == 0


async def test_a_stop_set_before_the_start_ends_the_run_at_once(target: Target) -> None:
    stop = asyncio.Event()
    stop.set()
    report = await asyncio.wait_for(
        generating.run(options(f"hey -z 1h -c 2 -t 0 {target.url('/hang')}"), stop=stop),
        STOP_TIMEOUT_S,
    )
    assert report.stopped


async def test_cancelling_the_run_leaves_nothing_behind(target: Target) -> None:
    target.notify_at = 2
    registry = prom.CollectorRegistry()
    run = asyncio.create_task(
        generating.run(
            options(f"hey -z 1h -c 2 -t 0 {target.url('/hang')}"),
            metrics=recording.Metrics(registry),
            canary=CANARY,
        )
    )
    await asyncio.wait_for(target.reached.wait(), STOP_TIMEOUT_S)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert (
        registry.get_sample_value(
            "sluice_loadtest_runs_total", {"canary": CANARY, "result": "cancelled"}
        )
        == 1
    )
    assert registry.get_sample_value("sluice_loadtest_running", {"canary": CANARY}) == 0


async def test_connection_refused_is_in_the_error_distribution() -> None:
    report = await generating.run(options(f"hey -n 4 -c 2 {REFUSED}"))
    assert (report.requests, report.responses) == (4, 0)
    assert report.status_codes == {}
    assert report.errors == {
        'Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused': 4
    }
    assert "Error distribution:\n  [4]\tGet " in summary.format_summary(report)


async def test_credentials_in_the_url_stay_out_of_error_messages() -> None:
    report = await generating.run(options("hey -n 1 -c 1 http://user:SECRET@127.0.0.1:1/x"))
    [message] = report.errors
    assert "SECRET" not in message
    assert message.startswith('Get "http://127.0.0.1:1/x": dial tcp')


async def test_csv_writes_one_line_per_response(target: Target) -> None:
    lines: list[str] = []
    await generating.run(options(f"hey -n 4 -c 2 -o csv {target.url()}"), output=lines.append)
    assert lines[0] == summary.CSV_HEADER
    number = r"\d+\.\d{4}"
    row = re.compile(rf"{number},{number},{number},NaN,{number},{number},200,{number}")
    assert len(lines) == 5
    assert all(row.fullmatch(line) for line in lines[1:]), lines


async def test_output_is_only_for_csv(target: Target) -> None:
    lines: list[str] = []
    await generating.run(options(f"hey -n 2 -c 1 {target.url()}"), output=lines.append)
    assert lines == []


async def test_metrics_count_requests_codes_errors_and_runs(target: Target) -> None:
    registry = prom.CollectorRegistry()
    metrics = recording.Metrics(registry)
    await generating.run(options(f"hey -n 6 -c 2 {target.url()}"), metrics=metrics, canary=CANARY)
    await generating.run(
        options(f"hey -n 2 -c 1 -disable-redirects {target.url('/redirect')}"),
        metrics=metrics,
        canary=CANARY,
    )
    await generating.run(options(f"hey -n 3 -c 1 {REFUSED}"), metrics=metrics, canary=CANARY)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"canary": CANARY, **labels})

    assert value("sluice_loadtest_requests_total", code="200") == 6
    assert value("sluice_loadtest_requests_total", code="302") == 2
    assert value("sluice_loadtest_requests_total", code="error") == 3
    assert value("sluice_loadtest_request_duration_seconds_count") == 8
    assert value("sluice_loadtest_runs_total", result="completed") == 3
    assert value("sluice_loadtest_running") == 0

"""The Prometheus adapter against a real Prometheus (``prometheus`` fixture) scraping a tiny
exporter served here, and against local fakes for what a real Prometheus will not do on
demand (record request headers, hang, answer garbage)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import pathlib
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import yaml
from aiohttp import web

from libs import errors
from libs.adapters import prometheus as adapter
from libs.model import canary as canary_model
from libs.model import meta, templates
from services.analyzer import metrics
from tests.fixtures.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

SEED = pathlib.Path(__file__).resolve().parents[2] / "data" / "manifests" / "podinfo-canary.yaml"
CANARY_ROUTE = "test_podinfo-podinfo-canary_podinfo"  # <namespace>_<apisixroute>_<rule>
TOKEN = "t0ken-SECRET-4f9a"
USERNAME = "prom-user"
PASSWORD = "pa55-SECRET-77c1"
BASIC = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
SECRETS = (TOKEN, PASSWORD, BASIC)
BAD_QUERY = "sum(rate(apisix_http_status[1m])"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests honours HTTP(S)_PROXY as Go's default client does; these tests talk to
    loopback servers directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@contextlib.asynccontextmanager
async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A local HTTP server answering every GET with ``handler``; yields its base URL."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def vector(*values: str) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"i": str(i)}, "value": [1.0, v]} for i, v in enumerate(values)],
        },
    }


class Exporter:
    """A gauge, two series of another gauge, and APISIX's ``apisix_http_status`` counters of
    the seed canary's route growing by 97 answers 200 and 3 answers 500 per scrape (a 97% success rate),
    plus a route of another canary that only fails (the query must not select it)."""

    def __init__(self) -> None:
        self.scrapes = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.scrapes += 1
        n = self.scrapes
        labels = 'matched_uri="/*",matched_host="app.example.com",service="",consumer="",node="127.0.0.1"'
        lines = [
            "# TYPE sluice_test_gauge gauge",
            "sluice_test_gauge 42",
            "# TYPE sluice_test_pair gauge",
            'sluice_test_pair{i="a"} 1',
            'sluice_test_pair{i="b"} 2',
            "# HELP apisix_http_status HTTP status codes per service in APISIX",
            "# TYPE apisix_http_status counter",
            f'apisix_http_status{{code="200",route="{CANARY_ROUTE}",{labels}}} {97 * n}',
            f'apisix_http_status{{code="500",route="{CANARY_ROUTE}",{labels}}} {3 * n}',
            f'apisix_http_status{{code="500",route="test_other_main",{labels}}} {50 * n}',
            "",
        ]
        return web.Response(text="\n".join(lines), content_type="text/plain")


@pytest.fixture
async def scraped(prometheus: PrometheusServer) -> AsyncIterator[PrometheusServer]:
    """The per-test Prometheus, scraping an ``Exporter`` every second."""
    exporter = Exporter()
    async with serve(exporter.handle) as url:
        await prometheus.aset_targets([url.removeprefix("http://")])
        await prometheus.wait_for("sluice_test_gauge", lambda v: v == 42, timeout=15)
        yield prometheus


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[..., adapter.Prometheus]]:
    made: list[adapter.Prometheus] = []

    def make(address: str, **kwargs: object) -> adapter.Prometheus:
        client = adapter.Prometheus(address, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def assert_translated(exc: BaseException) -> None:
    """A Sluice error, caused by the client's own exception, that names no secret."""
    assert isinstance(exc, errors.SluiceError)
    assert type(exc).__module__ in ("libs.errors", "libs.adapters.prometheus")
    texts = [str(exc), repr(exc.args), getattr(exc, "expected", "")]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


# --------------------------------------------------------------------------- a real Prometheus


async def test_values_from_a_real_prometheus(
    scraped: PrometheusServer, client_factory: Callable[..., adapter.Prometheus]
) -> None:
    prom = client_factory(scraped.url)
    assert await prom.query("sluice_test_gauge") == 42.0
    assert await prom.query("sum(sluice_test_pair)") == 3.0
    # several series: the last sample is the value, as in Flagger (neither summed nor refused)
    assert await prom.query("sort(sluice_test_pair)") == 2.0
    assert await prom.query("sort_desc(sluice_test_pair)") == 1.0
    # a query over several lines is sent with its whitespace collapsed, as Flagger does
    assert await prom.query("sum(\n\tsluice_test_pair\n)\n  * 2") == 6.0
    # scalars are single values (Flagger cannot decode them; Sluice takes them)
    assert await prom.query("scalar(sluice_test_gauge)") == 42.0
    assert await prom.query("1 + 1") == 2.0
    assert await prom.query("vector(1) / 0") == math.inf
    await prom.ping()  # Flagger's IsOnline: vector(1) answers 1


async def test_what_a_real_prometheus_refuses_is_typed(
    prometheus: PrometheusServer, client_factory: Callable[..., adapter.Prometheus]
) -> None:
    prom = client_factory(prometheus.url)
    table: list[tuple[str, type[errors.SluiceError], str]] = [
        ('sluice_absent_metric{x="y"}', errors.NoValuesFound, "no values found"),
        ("sum(sluice_absent_metric)", errors.NoValuesFound, "no values found"),
        ("vector(0) / 0", errors.NoValuesFound, "no values found"),  # a NaN sample
        ("0 / 0", errors.NoValuesFound, "no values found"),  # a NaN scalar
        ("vector(1)[1m:10s]", errors.InvalidInput, "multiple values"),  # a matrix
        ('"text"', errors.InvalidInput, "returned a string"),
    ]
    for query, kind, text in table:
        with pytest.raises(kind, match=text) as caught:
            await prom.query(query)
        assert type(caught.value) is kind, query
        assert_translated(caught.value)


async def test_a_syntax_error_is_invalid_input_with_prometheus_own_message(
    prometheus: PrometheusServer, client_factory: Callable[..., adapter.Prometheus]
) -> None:
    prom = client_factory(prometheus.url)
    with pytest.raises(errors.InvalidInput) as caught:
        await prom.query(BAD_QUERY)
    # what Prometheus itself says about it, read without the adapter
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": BAD_QUERY})
    with pytest.raises(urllib.error.HTTPError) as raw:
        await asyncio.to_thread(urllib.request.urlopen, url, timeout=5)
    with raw.value:
        said = json.loads(raw.value.read())["error"]
    error = caught.value
    assert "HTTP 400 bad_data" in error.message
    assert "parse error" in said
    assert error.expected == said  # Prometheus's error text, verbatim
    assert said in error.message
    assert "sum(rate(apisix_http_status[1m])" in error.message  # which query
    assert not error.temporary
    assert error.__cause__ is not None


async def test_the_seed_success_rate_query_on_scraped_apisix_counters(
    scraped: PrometheusServer, client_factory: Callable[..., adapter.Prometheus]
) -> None:
    """Flagger's builtin APISIX request-success-rate for the tutorial's canary, rendered by the
    analyzer's metrics module and run by the adapter, against counters Prometheus scraped."""
    canary = canary_model.parse_canary(yaml.safe_load(SEED.read_text()))
    metric = next(m for m in canary.get_analysis().metrics if m.name == "request-success-rate")
    query = metrics.render(canary, metric)
    assert query.kind is metrics.Kind.BUILTIN
    assert query.provider == "apisix"
    assert 'route=~"test_podinfo-podinfo-canary_.+"' in query.promql
    assert "[1m]" in query.promql
    # rate() needs two samples of the window
    await scraped.wait_for(query.promql, timeout=20)
    prom = client_factory(scraped.url)
    value = await prom.query(query.promql)
    assert value == pytest.approx(97.0, abs=1e-6)  # test_other_main's failures are not counted
    result = metrics.evaluate(canary, metric, value)
    assert (result.passed, result.min, result.max) == (False, 99.0, None)
    assert result.message == "Halt podinfo.test advancement success rate 97.00% < 99%"
    assert result.severity == "warn"
    # the same canary on a route that has no traffic yet
    quiet = query.promql.replace("test_podinfo-podinfo-canary", "test_podinfo-nothing-canary")
    with pytest.raises(errors.NoValuesFound) as caught:
        await prom.query(quiet)
    assert metrics.failed(canary, metric, caught.value).message == (
        "Halt advancement no values found for apisix metric request-success-rate "
        "probably podinfo.test is not receiving traffic"
    )


# --------------------------------------------------------------------------- failures


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_is_unavailable(
    client_factory: Callable[..., adapter.Prometheus],
) -> None:
    prom = client_factory(f"http://127.0.0.1:{free_port()}", token=TOKEN)
    with pytest.raises(errors.Unavailable, match="Connection refused") as caught:
        await prom.query("vector(1)")
    assert caught.value.temporary
    assert caught.value.__cause__ is not None
    assert_translated(caught.value)
    with pytest.raises(errors.Unavailable):
        await prom.ping()


@contextlib.asynccontextmanager
async def silent_server(first_bytes: bytes = b"", drip: bytes = b"") -> AsyncIterator[str]:
    """A TCP server that reads the request and then never finishes the answer: it sends
    ``first_bytes`` and then ``drip`` every 0.1 s (or nothing at all)."""
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if first_bytes:
                writer.write(first_bytes)
            while not stop.is_set():
                if drip:
                    writer.write(drip)
                    await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.15)  # the handlers see ``stop`` and close their sockets


@pytest.mark.parametrize(
    ("first_bytes", "drip"),
    [
        pytest.param(b"", b"", id="never-answers"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1\r\n \r\n",
            id="answers-forever",  # every read is quick: only the deadline of the whole call ends it
        ),
    ],
)
async def test_a_server_that_never_answers_is_a_timeout_within_the_timeout(
    client_factory: Callable[..., adapter.Prometheus], first_bytes: bytes, drip: bytes
) -> None:
    async with silent_server(first_bytes, drip) as url:
        prom = client_factory(url, timeout_s=0.5, password=PASSWORD, username=USERNAME)
        started = time.monotonic()
        with pytest.raises(errors.Timeout, match=r"no answer within 0\.5s") as caught:
            await prom.query("vector(1)")
        elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 0.9, elapsed
    assert caught.value.temporary
    assert_translated(caught.value)


def answer(status: int, body: object, content_type: str = "application/json") -> Handler:
    async def handle(_request: web.Request) -> web.Response:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, content_type=content_type)

    return handle


async def reset(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.abort()  # drop the connection without an answer
    return web.Response()


async def redirect_loop(request: web.Request) -> web.Response:
    raise web.HTTPFound(str(request.url))


def prom_error(error_type: str, text: str) -> dict[str, str]:
    return {"status": "error", "errorType": error_type, "error": text}


@pytest.mark.parametrize(
    ("handler", "kind", "text"),
    [
        (answer(422, prom_error("execution", "many-to-many matching not allowed")),
         errors.InvalidInput, "HTTP 422 execution: many-to-many matching not allowed"),
        (answer(503, prom_error("timeout", "query timed out in expression evaluation")),
         errors.Timeout, "query timed out"),
        (answer(503, prom_error("canceled", "query was canceled")),
         errors.Unavailable, "HTTP 503 canceled"),
        (answer(500, "<html>upstream gone</html>", "text/html"),
         errors.Unavailable, "HTTP 500: <html>upstream gone</html>"),
        (answer(429, "slow down", "text/plain"), errors.Unavailable, "HTTP 429: slow down"),
        (answer(401, "Unauthorized", "text/plain"), errors.PermanentError, "check the credentials"),
        (answer(403, "", "text/plain"), errors.PermanentError, r"HTTP 403: \(empty body\)"),
        (answer(404, "404 page not found", "text/plain"), errors.PermanentError,
         "is the address a Prometheus API"),
        (answer(200, "this is not json", "text/plain"), errors.Unavailable,
         "not a Prometheus API answer"),
        (answer(200, {"status": "success"}), errors.Unavailable, "not a Prometheus API answer"),
        (answer(200, {"data": {"result": {"a": 1}}}), errors.Unavailable,
         "not a Prometheus query result"),
        (answer(200, vector("not-a-number")), errors.Unavailable, "is not a number"),
        (answer(200, vector()), errors.NoValuesFound, "no values found"),
        (answer(200, vector("NaN")), errors.NoValuesFound, r"no values found \(the query returned NaN\)"),
        (answer(200, vector("1", "NaN")), errors.NoValuesFound, "no values found"),  # the last
        (answer(204, ""), errors.Unavailable, "not a Prometheus API answer"),
        (reset, errors.Unavailable, "cannot connect|Connection"),
        (redirect_loop, errors.Unavailable, "TooManyRedirects"),
    ],
)  # fmt: skip
async def test_no_client_exception_escapes(
    client_factory: Callable[..., adapter.Prometheus],
    handler: Handler,
    kind: type[errors.SluiceError],
    text: str,
) -> None:
    async with serve(handler) as url:
        prom = client_factory(url, token=TOKEN)
        with pytest.raises(kind, match=text) as caught:
            await prom.query("up")
    assert_translated(caught.value)


async def test_several_series_take_the_last_and_nan_only_counts_there(
    client_factory: Callable[..., adapter.Prometheus], caplog: pytest.LogCaptureFixture
) -> None:
    """Flagger keeps whichever series comes last; Sluice does too, and says so in its log."""
    async with serve(answer(200, vector("NaN", "7", "+Inf", "3.5"))) as url:
        with caplog.at_level(logging.WARNING, logger=adapter.__name__):
            assert await client_factory(url).query("x") == 3.5
    assert "query returned 4 series; the last one is the value" in caplog.text
    async with serve(answer(200, vector("-Inf"))) as url:
        assert await client_factory(url).query("x") == -math.inf
    async with serve(answer(200, vector("+Inf"))) as url:
        assert await client_factory(url).query("x") == math.inf


# --------------------------------------------------------------------------- credentials


class Recorder:
    """A fake query API that records the requests it gets; ``body`` answers them."""

    def __init__(self, status: int = 200, body: Callable[[web.Request], object] | None = None):
        self.requests: list[web.Request] = []
        self.status = status
        self.body = body or (lambda _r: vector("1"))

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.json_response(self.body(request), status=self.status)


async def test_bearer_token_and_headers_are_sent(
    client_factory: Callable[..., adapter.Prometheus],
) -> None:
    recorder = Recorder()
    async with serve(recorder.handle) as url:
        prom = client_factory(
            url + "/prom/",
            token=TOKEN,
            username=USERNAME,  # the token wins, as in Flagger
            password=PASSWORD,
            headers={"X-Scope-OrgID": "tenant1", "X-Multi": ("a", "b")},
        )
        assert await prom.query('sum(rate(x{a="b"}[1m]))') == 1.0
    (request,) = recorder.requests
    assert request.path == "/prom/api/v1/query"  # the address's path is kept
    assert request.query["query"] == 'sum(rate(x{a="b"}[1m]))'
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-Scope-OrgID"] == "tenant1"
    assert request.headers["X-Multi"] == "a, b"
    assert TOKEN not in repr(prom)


async def test_basic_auth_is_sent(client_factory: Callable[..., adapter.Prometheus]) -> None:
    recorder = Recorder()
    async with serve(recorder.handle) as url:
        prom = client_factory(url, username=USERNAME, password=PASSWORD)
        await prom.ping()
    (request,) = recorder.requests
    assert request.headers["Authorization"] == f"Basic {BASIC}"
    assert request.query["query"] == "vector(1)"
    assert PASSWORD not in repr(prom)


async def test_ping_wants_one(client_factory: Callable[..., adapter.Prometheus]) -> None:
    async with serve(Recorder(body=lambda _r: vector("0")).handle) as url:
        with pytest.raises(errors.Unavailable, match=r"value is not 1 for query: vector\(1\)"):
            await client_factory(url).ping()


async def test_no_credentials_no_authorization(
    client_factory: Callable[..., adapter.Prometheus],
) -> None:
    recorder = Recorder()
    async with serve(recorder.handle) as url:
        await client_factory(url, username=USERNAME).query("up")  # a user without a password
    assert "Authorization" not in recorder.requests[0].headers


async def test_secrets_never_appear_in_error_texts_or_logs(
    client_factory: Callable[..., adapter.Prometheus], caplog: pytest.LogCaptureFixture
) -> None:
    """A server that echoes the credentials back in its error answers: the adapter's errors
    and log lines still never carry them."""
    caplog.set_level(logging.DEBUG)

    def echo(request: web.Request) -> object:
        said = f"bad credentials {request.headers.get('Authorization')} for {request.query_string}"
        return prom_error("bad_data", said)

    for status in (400, 401, 500, 503):
        recorder = Recorder(status, echo)
        async with serve(recorder.handle) as url:
            for kwargs in ({"token": TOKEN}, {"username": USERNAME, "password": PASSWORD}):
                prom = client_factory(url, **kwargs)
                with pytest.raises(errors.SluiceError) as caught:
                    await prom.query("up")
                assert "***" in str(caught.value)  # the echo was there, and was redacted
                assert_translated(caught.value)
    # a string result that echoes the token
    async with serve(answer(200, {"data": {"resultType": "string", "result": [1, TOKEN]}})) as url:
        with pytest.raises(errors.InvalidInput) as caught:
            await client_factory(url, token=TOKEN).query("x")
        assert_translated(caught.value)
    for record in caplog.records:
        for secret in SECRETS:
            assert secret not in record.getMessage()


async def test_user_info_in_the_address_is_used_and_never_shown(
    client_factory: Callable[..., adapter.Prometheus],
) -> None:
    recorder = Recorder(400, lambda r: prom_error("bad_data", r.headers["Authorization"]))
    async with serve(recorder.handle) as url:
        prom = client_factory(url.replace("http://", f"http://{USERNAME}:{PASSWORD}@"))
        assert PASSWORD not in prom.address
        assert PASSWORD not in repr(prom)
        with pytest.raises(errors.InvalidInput) as caught:
            await prom.query("up")
    assert recorder.requests[0].headers["Authorization"] == f"Basic {BASIC}"
    assert_translated(caught.value)


# --------------------------------------------------------------------------- TLS


@pytest.fixture
async def self_signed(tmp_path: pathlib.Path) -> ssl.SSLContext:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = await asyncio.create_subprocess_exec(
        *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-days", "1"),
        *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await made.wait() == 0
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_insecure_skip_verify(
    client_factory: Callable[..., adapter.Prometheus], self_signed: ssl.SSLContext
) -> None:
    recorder = Recorder()
    async with serve(recorder.handle, ssl_context=self_signed) as url:
        with pytest.raises(errors.Unavailable, match="TLS failed") as caught:
            await client_factory(url, token=TOKEN).query("up")
        assert_translated(caught.value)
        # no InsecureRequestWarning either (warnings are errors in this suite)
        assert await client_factory(url, insecure_skip_verify=True).query("up") == 1.0
    assert len(recorder.requests) == 1


# --------------------------------------------------------------------------- construction


def test_from_a_metric_template_provider() -> None:
    provider = templates.MetricProvider(
        type="prometheus",
        address="http://prometheus.monitoring:9090/",
        secret_ref=meta.LocalObjectReference(name="prom-auth"),
        headers={"X-Scope-OrgID": ("tenant1",)},
    )
    with_token = adapter.Prometheus.from_provider(provider, {"token": TOKEN.encode()})
    assert with_token.address == "http://prometheus.monitoring:9090"
    assert with_token.timeout_s == 5.0  # Flagger's
    basic = adapter.Prometheus.from_provider(
        provider, {"username": USERNAME.encode(), "password": PASSWORD}
    )
    assert PASSWORD not in repr(basic)
    with pytest.raises(
        errors.InvalidInput, match="prometheus credentials does not contain a password"
    ):
        adapter.Prometheus.from_provider(provider, {"username": b"u"})
    with pytest.raises(errors.InvalidInput, match="does not contain a username"):
        adapter.Prometheus.from_provider(provider, {})
    anonymous = templates.MetricProvider(type="prometheus", address="https://p.example/")
    assert adapter.Prometheus.from_provider(anonymous, {"token": b"ignored"})
    with pytest.raises(errors.InvalidInput, match="prometheus address is not a valid URL"):
        adapter.Prometheus.from_provider(templates.MetricProvider(type="prometheus"))


@pytest.mark.parametrize(
    "address", ["", "prometheus:9090", "ftp://p.example", "http://", "http://h:notaport"]
)
def test_a_bad_address_is_invalid_input(address: str) -> None:
    with pytest.raises(errors.InvalidInput, match="is not a valid URL"):
        adapter.Prometheus(address)


def test_a_bad_timeout_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput, match="timeout"):
        adapter.Prometheus("http://p.example", timeout_s=0)

"""Services on a bus that lets no one in: credentials and TLS from ``SLUICE_NATS_*`` settings
(``libs.settings``, ``libs.bus.connect_options``), against a real nats-server running the
configuration shipped in deploy/nats/ with TLS and a CA made here with ``openssl``.

A service with its user, its password file and the CA becomes ready; a wrong password or an
unknown CA keeps it unready with a plain reason in its log; a missing file stops start-up naming
the variable and the path. The ``integration`` role receives events (live and replayed) and is
refused any command by the server."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
from collections.abc import Iterator

import nats.errors
import nkeys
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from libs import bus, errors, messages, settings, streams
from tests.fixtures import secured_nats, services
from tests.fixtures.secured_nats import password
from tests.fixtures.services import ServiceFactory, secret

TIMEOUT_S = 15.0
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> secured_nats.Pki:
    return secured_nats.Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secured(tmp_path: pathlib.Path, pki: secured_nats.Pki) -> Iterator[secured_nats.ShippedNats]:
    server = secured_nats.ShippedNats(tmp_path, tls=pki)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def shown_secrets(text: str) -> list[str]:
    """The registered secrets (every password of the shipped configuration, the password
    files' contents, nkey seeds) that ``text`` contains."""
    return sorted(value for value in services.SECRETS if value in text)


def password_file(tmp_path: pathlib.Path, user: str, value: str | None = None) -> str:
    path = tmp_path / f"{user}.password"
    path.write_text(secret(value or password(user)) + "\n")
    path.chmod(0o600)
    return str(path)


# ----------------------------------------------------------------------------- settings


def test_settings_refuse_two_ways_to_authenticate_naming_the_variables(
    tmp_path: pathlib.Path,
) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text("x")
    with pytest.raises(errors.InvalidInput) as caught:
        settings.from_env(
            settings.ServiceSettings,
            {
                "SLUICE_NATS_CREDS_FILE": str(creds),
                "SLUICE_NATS_USER": "watcher",
                "SLUICE_NATS_PASSWORD_FILE": str(creds),
            },
        )
    assert str(caught.value).startswith("SLUICE_NATS_USER: expected one way to authenticate")
    assert "SLUICE_NATS_CREDS_FILE too" in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SLUICE_NATS_USER": "watcher"},
            "SLUICE_NATS_USER: expected SLUICE_NATS_PASSWORD_FILE with it",
        ),
        (
            {"SLUICE_NATS_TLS_CERT_FILE": "{ca}"},
            "SLUICE_NATS_TLS_KEY_FILE: expected a file with SLUICE_NATS_TLS_CERT_FILE",
        ),
        (
            {"SLUICE_NATS_TLS_CA_FILE": "{missing}"},
            "SLUICE_NATS_TLS_CA_FILE: expected a readable file, got '{missing}' (no such file)",
        ),
        (
            {"SLUICE_NATS_NKEY_FILE": "{dir}"},
            "SLUICE_NATS_NKEY_FILE: expected a readable file, got '{dir}' (not a readable file)",
        ),
    ],
)
def test_settings_name_the_bad_variable(
    tmp_path: pathlib.Path, pki: secured_nats.Pki, environ: dict[str, str], message: str
) -> None:
    values = {"ca": pki.path("ca.crt"), "missing": str(tmp_path / "nope.pem"), "dir": str(tmp_path)}
    environ = {k: v.format(**values) for k, v in environ.items()}
    with pytest.raises(errors.InvalidInput) as caught:
        settings.from_env(settings.ServiceSettings, environ)
    assert str(caught.value).startswith(message.format(**values))


def test_connect_options_read_the_files(tmp_path: pathlib.Path, pki: secured_nats.Pki) -> None:
    cfg = settings.from_env(
        settings.ServiceSettings,
        {
            "SLUICE_NATS_URL": "tls://127.0.0.1:4222",
            "SLUICE_NATS_USER": "watcher",
            "SLUICE_NATS_PASSWORD_FILE": password_file(tmp_path, "watcher"),
            "SLUICE_NATS_TLS_CA_FILE": pki.path("ca.crt"),
            "SLUICE_NATS_TLS_CERT_FILE": pki.path("client.crt"),
            "SLUICE_NATS_TLS_KEY_FILE": pki.path("client.key"),
        },
    )
    options = bus.connect_options(cfg)
    assert (options["user"], options["password"]) == ("watcher", password("watcher"))
    assert options["tls"].verify_mode.name == "CERT_REQUIRED"
    # a certificate that is not one names its setting
    bad = tmp_path / "not-a.crt"
    bad.write_text("not a certificate")
    with pytest.raises(errors.InvalidInput, match=r"^SLUICE_NATS_TLS_CERT_FILE: .*not-a.crt"):
        bus.connect_options(
            settings.ServiceSettings(
                nats_tls_cert_file=str(bad), nats_tls_key_file=pki.path("client.key")
            )
        )
    # an empty secret file is refused at start-up too
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(errors.InvalidInput, match=r"^SLUICE_NATS_TOKEN_FILE: .*empty' is empty"):
        bus.connect_options(settings.ServiceSettings(nats_token_file=str(empty)))


# ----------------------------------------------------------------------------- services


@pytest.mark.e2e
async def test_a_service_becomes_ready_with_its_password_file_and_the_ca(
    secured: secured_nats.ShippedNats,
    pki: secured_nats.Pki,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    shifter = service(
        "traffic_shifter",
        secured.url,
        SLUICE_NATS_USER="traffic-shifter",
        SLUICE_NATS_PASSWORD_FILE=password_file(tmp_path, "traffic-shifter"),
        SLUICE_NATS_TLS_CA_FILE=pki.path("ca.crt"),
    )
    await shifter.wait_log(r" ready\b", timeout=START_TIMEOUT_S)
    await shifter.ready()
    assert f"connected to NATS at {secured.url}" in shifter.log_text()
    # it answers a command sent over TLS by the analyzer's user
    analyzer = Client()
    await analyzer.connect(secured.url_for("analyzer"), tls=pki.context(), allow_reconnect=False)
    try:
        reply = await analyzer.request(messages.CMD_WORKLOAD, b"{}", timeout=TIMEOUT_S)
        assert isinstance(messages.REPLY_DECODER.decode(reply.data), messages.CommandFailed)
    finally:
        await analyzer.close()
    assert shifter.terminate() == 0
    assert shown_secrets(shifter.log_text()) == []


@pytest.mark.e2e
async def test_a_wrong_password_or_an_unknown_ca_keeps_a_service_unready_saying_why(
    secured: secured_nats.ShippedNats,
    pki: secured_nats.Pki,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    other = secured_nats.Pki(tmp_path / "other-pki", name="Somebody else's CA")
    wrong = service(
        "notifier",
        secured.url,
        SLUICE_NATS_USER="notifier",
        SLUICE_NATS_PASSWORD_FILE=password_file(tmp_path, "notifier", "wrong-password-42"),
        SLUICE_NATS_TLS_CA_FILE=pki.path("ca.crt"),
    )
    unknown_ca = service(
        "webhook_runner",
        secured.url,
        SLUICE_NATS_USER="webhook-runner",
        SLUICE_NATS_PASSWORD_FILE=password_file(tmp_path, "webhook-runner"),
        SLUICE_NATS_TLS_CA_FILE=other.path("ca.crt"),
    )
    await wrong.wait_log(
        r"the server refused the credentials \(nats: 'Authorization Violation'\)",
        timeout=START_TIMEOUT_S,
    )
    await unknown_ca.wait_log(
        r"TLS handshake failed: the server's certificate does not verify \(.+\); "
        r"check the CA bundle",
        timeout=START_TIMEOUT_S,
    )
    for process in (wrong, unknown_ca):
        await process.wait_listening()
        await process.wait_status("/readyz", 503)
        assert process.terminate() == 0
        # neither the refused password nor the right ones are ever logged
        assert shown_secrets(process.log_text()) == []


@pytest.mark.e2e
def test_a_missing_password_file_stops_start_up_naming_the_variable_and_path(
    tmp_path: pathlib.Path, service: ServiceFactory
) -> None:
    missing = tmp_path / "no-such-password"
    process = service(
        "watcher",
        "nats://127.0.0.1:1",
        SLUICE_NATS_USER="watcher",
        SLUICE_NATS_PASSWORD_FILE=str(missing),
    )
    assert process.proc is not None
    try:
        code = process.proc.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the watcher kept running:\n{process.log_text()}")
    assert code == 2
    assert (
        f"SLUICE_NATS_PASSWORD_FILE: expected a readable file, got '{missing}' (no such file)"
        in process.log_text()
    )


@pytest.mark.e2e
async def test_a_service_connects_with_an_nkey_seed_file(
    tmp_path: pathlib.Path, service: ServiceFactory
) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(secret(seed.decode()) + "\n")
    config = tmp_path / "nkey.conf"
    config.write_text(f'jetstream {{ store_dir: "{tmp_path / "store"}" }}\n'
                      f'authorization {{ users = [ {{ nkey: {public} }} ] }}\n')  # fmt: skip
    server = secured_nats.ConfiguredNats(tmp_path / "store", config)
    server.start()
    try:
        shifter = service("traffic_shifter", server.url, SLUICE_NATS_NKEY_FILE=str(seed_file))
        await shifter.wait_log(r" ready\b", timeout=START_TIMEOUT_S)
        assert shifter.terminate() == 0
        assert shown_secrets(shifter.log_text()) == []
    finally:
        server.stop()


# ----------------------------------------------------------------------------- integrations


@pytest.mark.integration
async def test_an_integration_receives_events_and_cannot_send_a_command(
    secured: secured_nats.ShippedNats, pki: secured_nats.Pki
) -> None:
    complaints: asyncio.Queue[str] = asyncio.Queue()

    async def on_error(exc: Exception) -> None:
        await complaints.put(str(exc))

    admin, analyzer, integration = Client(), Client(), Client()
    await admin.connect(secured.url_for("admin"), tls=pki.context(), allow_reconnect=False)
    await analyzer.connect(secured.url_for("analyzer"), tls=pki.context(), allow_reconnect=False)
    await integration.connect(
        secured.url,
        user="integration",
        password=password("integration"),
        tls=pki.context(),
        allow_reconnect=False,
        error_cb=on_error,
    )
    try:
        await streams.declare(admin.jetstream(), streams=(streams.EVENTS,), buckets=())
        event = messages.PhaseChanged(
            canary=messages.CanaryRef(namespace="shop", name="podinfo"),
            previous=messages.Phase.INITIALIZED,
            phase=messages.Phase.PROGRESSING,
        )
        subject = messages.event_subject("shop", "podinfo", "phase_changed")
        await analyzer.jetstream().publish(subject, messages.ENCODER.encode(event))

        # replayed through an ephemeral JetStream consumer
        replay = await integration.jetstream().subscribe(
            messages.EVENTS_ALL, stream=streams.EVENTS.name, ordered_consumer=True
        )
        first = await replay.next_msg(timeout=TIMEOUT_S)
        assert first.subject == subject
        assert messages.EVENT_DECODER.decode(first.data) == event
        await replay.unsubscribe()

        # live, on a core subscription
        live: asyncio.Queue[Msg] = asyncio.Queue()
        await integration.subscribe(messages.EVENTS_ALL, cb=live.put)
        await integration.flush(timeout=int(TIMEOUT_S))
        async with asyncio.timeout(TIMEOUT_S):
            while True:  # the first core message after a subscription may be missed (see
                await analyzer.publish(subject, b"{}")  # tests/cli/test_security.py)
                try:
                    got = await asyncio.wait_for(live.get(), 0.5)
                    break
                except TimeoutError:
                    continue
        assert got.subject == subject

        # no command, no control request, no event: the server refuses each publish
        for refused in (messages.CMD_TRAFFIC, messages.CMD_WORKLOAD, subject):
            await integration.publish(refused, b"{}")
            async with asyncio.timeout(TIMEOUT_S):
                complaint = await complaints.get()
            assert f'permissions violation for publish to "{refused.lower()}"' in complaint
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await integration.request("sluice.control.shop.podinfo.abort", b"{}", timeout=1)
        async with asyncio.timeout(TIMEOUT_S):
            complaint = await complaints.get()
        assert "permissions violation for publish" in complaint
    finally:
        for nc in (admin, analyzer, integration):
            await nc.close()


# ----------------------------------------------------------------------------- the secret scan


def test_the_session_secret_scan_searches_bus_messages_and_stack_logs(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What tests/conftest.py runs at the end of the session, on a scan of its own."""
    from tests.fixtures import services

    monkeypatch.setattr(services, "SECRETS", set())
    monkeypatch.setattr(services, "MESSAGES", {})
    monkeypatch.setattr(services, "LOGS", [])
    monkeypatch.setattr(services, "LOG_DIRS", [])
    token = services.secret("hunter2-token")
    services.record_message("sluice.events.shop.podinfo.webhook_failed", b'{"message":"ok"}')
    services.watch_logs(tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "analyzer.log").write_text("nothing to see\n")
    assert services.leaked_secrets() == []

    services.record_message("sluice.deliveries.shop.podinfo", f'{{"error":"{token}"}}'.encode())
    (tmp_path / "logs" / "notifier.log").write_text(f"GET https://x/?t={token}\n")
    assert services.leaked_secrets() == [
        f"{tmp_path / 'logs' / 'notifier.log'}: {token!r}",
        f"bus message on sluice.deliveries.shop.podinfo: {token!r}",
    ]

"""Services on a bus run in NATS operator mode: ``SLUICE_NATS_CREDS_FILE`` (a ``.creds`` file with
the user's JWT and nkey seed, as ``nsc generate creds`` writes it), ``libs.bus.connect_options``.

The test is its own operator: it makes the operator, account and user nkeys (ed25519), signs the
account and user JWTs, and starts a real nats-server in operator mode with the account
preloaded into a memory resolver. A service with the creds file becomes ready and answers a
command; one whose user was signed by an account the server does not know stays unready,
saying the server refused its credentials, and never logs its seed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import nats
import nkeys
import pytest

from libs import bus, messages, settings
from tests.fixtures import secured_nats
from tests.fixtures.services import ServiceFactory, secret

TIMEOUT_S = 15.0
START_TIMEOUT_S = 30.0
UNLIMITED = -1


def keypair(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def public(key: nkeys.KeyPair) -> str:
    return str(key.public_key.decode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(issuer: nkeys.KeyPair, subject: str, name: str, claims: dict[str, Any]) -> str:
    """A NATS JWT (v2): ``subject``'s claims, signed by ``issuer``'s ed25519 nkey."""
    body: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": public(issuer),
        "name": name,
        "sub": subject,
        "nats": {**claims, "version": 2},
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    signature = issuer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


def account_claims(*, jetstream: bool) -> dict[str, Any]:
    limits = {
        "subs": UNLIMITED,
        "data": UNLIMITED,
        "payload": UNLIMITED,
        "imports": UNLIMITED,
        "exports": UNLIMITED,
        "wildcards": True,
        "conn": UNLIMITED,
        "leaf": UNLIMITED,
    }
    if jetstream:  # the services declare streams and KV buckets
        limits |= {
            "mem_storage": UNLIMITED,
            "disk_storage": UNLIMITED,
            "streams": UNLIMITED,
            "consumer": UNLIMITED,
        }
    return {"type": "account", "limits": limits, "default_permissions": {"pub": {}, "sub": {}}}


def user_claims() -> dict[str, Any]:
    return {
        "type": "user",
        "pub": {},
        "sub": {},
        "subs": UNLIMITED,
        "data": UNLIMITED,
        "payload": UNLIMITED,
    }


def creds(jwt: str, seed: str) -> str:
    """The ``.creds`` file format of ``nsc`` (the markers are what clients look for)."""
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


class Operator:
    """An operator with one account (JetStream enabled), the system account the server needs
    for JetStream, and users of the first."""

    def __init__(self) -> None:
        self.key = keypair(nkeys.PREFIX_BYTE_OPERATOR)
        self.jwt = signed_jwt(self.key, public(self.key), "sluice-test", {"type": "operator"})
        self.account = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
        self.account_jwt = signed_jwt(
            self.key, public(self.account), "sluice", account_claims(jetstream=True)
        )
        self.system = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
        self.system_jwt = signed_jwt(
            self.key, public(self.system), "SYS", account_claims(jetstream=False)
        )

    def user_creds(self, path: pathlib.Path, account: nkeys.KeyPair | None = None) -> str:
        """A creds file for a new user signed by ``account`` (default: the known one); its seed
        is registered as a secret no log may show."""
        user = keypair(nkeys.PREFIX_BYTE_USER)
        jwt = signed_jwt(account or self.account, public(user), path.stem, user_claims())
        path.write_text(creds(jwt, secret(user.seed.decode())))
        path.chmod(0o600)
        return str(path)

    def server_config(self, directory: pathlib.Path) -> pathlib.Path:
        (directory / "operator.jwt").write_text(self.jwt)
        config = directory / "operator.conf"
        config.write_text(
            f'operator: "{directory / "operator.jwt"}"\n'
            f"system_account: {public(self.system)}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f'  {public(self.account)}: "{self.account_jwt}"\n'
            f'  {public(self.system)}: "{self.system_jwt}"\n'
            "}\n"
            f'jetstream {{ store_dir: "{directory / "store"}" }}\n'
        )
        return config


@pytest.fixture
def operator() -> Operator:
    return Operator()


@pytest.fixture
def operator_nats(
    tmp_path: pathlib.Path, operator: Operator
) -> Iterator[secured_nats.ConfiguredNats]:
    server = secured_nats.ConfiguredNats(tmp_path / "store", operator.server_config(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_claims_are_signed_by_their_issuer(operator: Operator) -> None:
    header, payload, signature = operator.account_jwt.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert body["iss"] == public(operator.key)
    assert body["sub"] == public(operator.account)
    assert body["nats"]["type"] == "account"
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert operator.key.verify(f"{header}.{payload}".encode(), raw)


@pytest.mark.e2e
async def test_a_creds_file_connects_and_a_stranger_is_refused(
    operator: Operator,
    operator_nats: secured_nats.ConfiguredNats,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    # the connection a service makes: options from its settings
    good = operator.user_creds(tmp_path / "traffic-shifter.creds")
    cfg = settings.from_env(
        settings.ServiceSettings,
        {"SLUICE_NATS_URL": operator_nats.url, "SLUICE_NATS_CREDS_FILE": good},
    )
    nc = await nats.connect(
        operator_nats.url, allow_reconnect=False, connect_timeout=5, **bus.connect_options(cfg)
    )
    await nc.close()

    shifter = service("traffic_shifter", operator_nats.url, SLUICE_NATS_CREDS_FILE=good)
    await shifter.wait_log(r" ready\b", timeout=START_TIMEOUT_S)
    await shifter.ready()
    # it answers a command from another user of the same account
    analyzer_creds = operator.user_creds(tmp_path / "analyzer.creds")
    analyzer = await nats.connect(
        operator_nats.url, allow_reconnect=False, connect_timeout=5, user_credentials=analyzer_creds
    )
    try:
        reply = await analyzer.request(messages.CMD_WORKLOAD, b"{}", timeout=TIMEOUT_S)
        assert isinstance(messages.REPLY_DECODER.decode(reply.data), messages.CommandFailed)
    finally:
        await analyzer.close()
    assert shifter.terminate() == 0

    # a user signed by an account the operator never signed
    stranger = operator.user_creds(
        tmp_path / "stranger.creds", account=keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    )
    refused = service("notifier", operator_nats.url, SLUICE_NATS_CREDS_FILE=stranger)
    await refused.wait_log(
        r"the server refused the credentials \(nats: 'Authorization Violation'\)",
        timeout=START_TIMEOUT_S,
    )
    await refused.wait_listening()
    await refused.wait_status("/readyz", 503)
    assert refused.terminate() == 0

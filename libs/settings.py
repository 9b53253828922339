"""Service settings: one frozen Struct per service, read once from the environment.

Each field maps to an environment variable ``SLUICE_<FIELD>`` (upper case). Values are
converted with msgspec (``"5"`` → ``5``, ``"true"`` → ``True``); a bad value fails start-up
with the variable's name and what was expected::

    SLUICE_HEALTH_PORT: expected an integer, got "abc"

Settings are passed explicitly to whoever needs them, never read from globals. Every timeout
and backoff is a setting with its unit in the name.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from typing import TypeVar

import msgspec

from libs import errors

PREFIX = "SLUICE_"
KUBERNETES = "kubernetes"
STANDALONE = "standalone"
MODES = (KUBERNETES, STANDALONE)

_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
}


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service shares. Subclass per service to add its own fields."""

    nats_url: str = "nats://127.0.0.1:4222"
    nats_connect_timeout_s: float = 5.0
    nats_reconnect_wait_s: float = 1.0
    nats_request_timeout_s: float = 10.0
    # NATS credentials: at most one of a creds file (JWT + nkey seed), an nkey seed file, a
    # user with a password (better from a file than in the URL), or a token (docs/security.md)
    nats_creds_file: str = ""
    nats_nkey_file: str = ""
    nats_user: str = ""
    nats_password_file: str = ""
    nats_token_file: str = ""
    # TLS: the CA bundle that signed the server's certificate (else the system's), and a client
    # certificate + key for mutual TLS; any of them turns TLS on, as a tls:// URL does
    nats_tls_ca_file: str = ""
    nats_tls_cert_file: str = ""
    nats_tls_key_file: str = ""
    health_host: str = "127.0.0.1"
    health_port: int = 0  # 0: any free port (the chosen one is logged)
    log_level: str = "INFO"
    log_format: str = "text"  # "text" for people, "json" for log pipelines
    shutdown_grace_s: float = 10.0  # finish in-flight work for at most this long
    hard_exit_s: float = 25.0  # then exit regardless (shorter than the pod's 30s grace)
    max_in_flight: int = 32  # messages handled at once per consumer
    fetch_timeout_s: float = 2.0  # one JetStream pull waits at most this long for messages
    retry_delay_s: float = 5.0  # a message whose handling failed temporarily comes back after this
    max_retry_delay_s: float = 300.0  # ... doubling with every failure up to this
    max_failures: int = 10  # a tick that failed this often is moved to the dead-letter stream
    max_command_timeout_s: float = 300.0  # a command's own timeout_s is clamped to this
    stream_replicas: int = 1  # copies of each stream and KV bucket in a JetStream cluster (1..5)
    # "kubernetes" (Flagger Canaries, the default) or "standalone" (ApisixCanaries in NATS KV,
    # APISIX through its Admin API; docs/standalone.md)
    mode: str = "kubernetes"
    # standalone mode: APISIX's Admin API (watcher and traffic-shifter), its key from a file
    apisix_admin_url: str = "http://127.0.0.1:9180"
    apisix_admin_key_file: str = ""
    apisix_admin_timeout_s: float = 5.0  # one Admin API call (5xx and connection errors retried)

    def __post_init__(self) -> None:
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(
                f"log_level: expected one of DEBUG, INFO, WARNING, ERROR, got {self.log_level!r}"
            )
        if self.log_format not in ("text", "json"):
            raise ValueError(f'log_format: expected "text" or "json", got {self.log_format!r}')
        if not 0 <= self.health_port <= 65535:
            raise ValueError(f"health_port: expected 0..65535, got {self.health_port}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight: expected at least 1, got {self.max_in_flight}")
        if not 1 <= self.stream_replicas <= 5:
            raise ValueError(f"stream_replicas: expected 1..5, got {self.stream_replicas}")
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_failures < 1:
            raise ValueError(f"max_failures: expected at least 1, got {self.max_failures}")
        for field in (
            "fetch_timeout_s",
            "retry_delay_s",
            "max_retry_delay_s",
            "max_command_timeout_s",
        ):
            value = getattr(self, field)
            if not 0 < value < float("inf"):
                raise ValueError(f"{field}: expected a positive number of seconds, got {value}")
        _check_nats_security(self)
        if self.shutdown_grace_s >= self.hard_exit_s:
            raise ValueError(
                f"shutdown_grace_s: expected less than hard_exit_s ({self.hard_exit_s}), "
                f"got {self.shutdown_grace_s}"
            )
        if not 0 < self.apisix_admin_timeout_s < float("inf"):
            raise ValueError(
                "apisix_admin_timeout_s: expected a positive number of seconds, "
                f"got {self.apisix_admin_timeout_s}"
            )

    @property
    def standalone(self) -> bool:
        """Standalone mode: no Kubernetes, canaries in NATS KV, APISIX's Admin API."""
        return self.mode == STANDALONE


S = TypeVar("S", bound=ServiceSettings)

NATS_FILES = (
    "nats_creds_file",
    "nats_nkey_file",
    "nats_password_file",
    "nats_token_file",
    "nats_tls_ca_file",
    "nats_tls_cert_file",
    "nats_tls_key_file",
)


def _check_nats_security(cfg: ServiceSettings) -> None:
    """One way to authenticate, complete TLS pairs, and files that exist and can be read
    (a missing one fails start-up naming the setting and the path)."""
    ways = [
        field
        for field in ("nats_creds_file", "nats_nkey_file", "nats_user", "nats_token_file")
        if getattr(cfg, field)
    ]
    if len(ways) > 1:
        raise ValueError(
            f"{ways[1]}: expected one way to authenticate to NATS, got {_env_name(ways[0])} too"
        )
    if cfg.nats_password_file and not cfg.nats_user:
        raise ValueError(f"nats_password_file: expected {_env_name('nats_user')} with it")
    if cfg.nats_user and not cfg.nats_password_file:
        raise ValueError(
            f"nats_user: expected {_env_name('nats_password_file')} with it (a token goes in "
            f"{_env_name('nats_token_file')})"
        )
    if bool(cfg.nats_tls_cert_file) != bool(cfg.nats_tls_key_file):
        given, missing = (
            ("nats_tls_cert_file", "nats_tls_key_file")
            if cfg.nats_tls_cert_file
            else ("nats_tls_key_file", "nats_tls_cert_file")
        )
        raise ValueError(f"{missing}: expected a file with {_env_name(given)} (mutual TLS)")
    for field in NATS_FILES:
        path = getattr(cfg, field)
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            why = "no such file" if not os.path.exists(path) else "not a readable file"
            raise ValueError(f"{field}: expected a readable file, got {path!r} ({why})")


_PATH = re.compile(r"`\$\.([A-Za-z0-9_]+)`")
_EXPECTED_TYPE = re.compile(r"Expected `([^`]+)`")


def _field_type(cls: type, field: str) -> object:
    """The resolved annotation of ``field`` (a Literal's choices name what is expected)."""
    return typing.get_type_hints(cls).get(field)


def _env_name(field: str) -> str:
    return PREFIX + field.upper()


def from_env(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Build ``cls`` from ``SLUICE_*`` variables; raise ``InvalidInput`` naming the variable."""
    env = os.environ if environ is None else environ
    raw = {
        field: env[_env_name(field)] for field in cls.__struct_fields__ if _env_name(field) in env
    }
    try:
        return msgspec.convert(raw, type=cls, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field_match = _PATH.search(text)
        if field_match:
            field = field_match.group(1)
            type_match = _EXPECTED_TYPE.search(text)
            choices = typing.get_args(_field_type(cls, field))
            if type_match:
                expected = _EXPECTED.get(type_match.group(1), type_match.group(1))
            elif choices:
                expected = "one of " + ", ".join(str(c) for c in choices)
            else:
                expected = "a valid value"
            message = f'{_env_name(field)}: expected {expected}, got "{raw.get(field, "")}"'
        else:
            # raised by __post_init__: "<field>: expected ..., got ..."
            field, _, rest = text.partition(":")
            message = f"{_env_name(field.strip())}:{rest}" if rest else text
            field = field.strip()
        raise errors.InvalidInput(message, path=_env_name(field)) from exc

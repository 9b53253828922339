"""What a simulated pod's app should do, read from its container spec (pure, no I/O).

A pod template's container decides the behaviour of the podinfo-like app that serves the pod,
so ``kubectl set image`` and ``kubectl set env`` change it exactly like a real rollout would:

* version: the image tag (``ghcr.io/stefanprodan/podinfo:6.0.1`` → ``6.0.1``; no tag → ``latest``);
* podinfo's own flags, from ``command`` + ``args`` (pflag syntax: ``--flag=value``, ``--flag value``,
  bare ``--bool-flag``), with podinfo's ``PODINFO_<FLAG>`` environment variables as fallback (viper:
  a flag on the command line wins over the environment):
  ``--port`` (default 9898), ``--level``, ``--ui-color``, ``--ui-message``,
  ``--random-error`` (1 request in 3 answers 500, 400 or 409, as podinfo's middleware),
  ``--random-delay`` with ``--random-delay-min``/``--random-delay-max``/``--random-delay-unit``
  (podinfo: a whole number of units in [min, max), defaults 0, 5, seconds),
  ``--unready`` (never ready), ``--unhealthy`` (``/healthz`` answers 503);
* sandbox knobs from ``env``: ``SANDBOX_ERROR_RATE`` (0 to 1, share of requests answered 500),
  ``SANDBOX_LATENCY_MS`` (added latency), ``SANDBOX_NEVER_READY`` (``1``/``true``: never ready).

A bad value never stops the app: it is ignored, logged and listed in ``AppConfig.problems``
with the variable or flag named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PORT = 9898
DEFAULT_COLOR = "#34577c"
# podinfo's boolean flags: a bare ``--flag`` means true and never consumes the next word
BOOL_FLAGS = frozenset({"random-delay", "random-error", "unhealthy", "unready", "h2c", "version"})
TRUE_WORDS = frozenset({"1", "t", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "f", "false", "no", "off", ""})


@dataclasses.dataclass(frozen=True)
class AppConfig:
    image: str
    version: str
    revision: str
    hostname: str = "podinfo"
    port: int = DEFAULT_PORT
    level: str = "info"
    color: str = DEFAULT_COLOR
    message: str = ""
    random_error: bool = False
    random_delay: bool = False
    random_delay_min: int = 0
    random_delay_max: int = 5
    random_delay_unit_s: float = 1.0  # seconds per unit ("s" → 1.0, "ms" → 0.001)
    error_rate: float = 0.0  # SANDBOX_ERROR_RATE
    latency_s: float = 0.0  # SANDBOX_LATENCY_MS / 1000
    never_ready: bool = False  # SANDBOX_NEVER_READY or --unready
    unhealthy: bool = False
    env: tuple[tuple[str, str], ...] = ()
    problems: tuple[str, ...] = ()


def image_version(image: str) -> str:
    """The tag of an image reference: ``repo/name:tag@sha256:...`` → ``tag``; none → ``latest``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1] or "latest"
    return "latest"


def image_revision(image: str) -> str:
    """A stable stand-in for podinfo's git revision: a short digest of the image reference."""
    return hashlib.sha1(image.encode()).hexdigest()[:7]


def parse_flags(words: Sequence[str]) -> dict[str, str]:
    """pflag-style ``--name=value`` / ``--name value`` / ``--bool`` words → {name: value}.

    Words before the first flag (the program, e.g. ``./podinfo``) and stray words are skipped;
    single-dash long flags (``-port=9898``, Go's ``flag`` package) are accepted too.
    """
    flags: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = str(words[i])
        i += 1
        if not word.startswith("-") or word in ("-", "--"):
            continue
        name, eq, value = word.lstrip("-").partition("=")
        if not eq:
            if name in BOOL_FLAGS:
                value = "true"
            elif i < len(words) and not str(words[i]).startswith("-"):
                value = str(words[i])
                i += 1
            else:
                value = ""
        flags[name] = value
    return flags


def env_pairs(env: Sequence[Mapping[str, Any]] | None) -> tuple[tuple[str, str], ...]:
    """A container's ``env`` list (values already resolved) → ((name, value), ...).

    Entries with ``valueFrom`` that nobody resolved are dropped: the app sees them as unset.
    """
    pairs = []
    for item in env or ():
        name = item.get("name")
        if not name or ("value" not in item and "valueFrom" in item):
            continue
        pairs.append((str(name), "" if item.get("value") is None else str(item["value"])))
    return tuple(pairs)


class _Reader:
    """Typed lookups over flags (first) and env (fallback), collecting problems."""

    def __init__(self, flags: Mapping[str, str], env: Mapping[str, str]) -> None:
        self.flags = flags
        self.env = env
        self.problems: list[str] = []

    def _raw(self, flag: str | None, env: str | None) -> tuple[str, str] | None:
        if flag is not None and flag in self.flags:
            return f"--{flag}", self.flags[flag]
        if env is not None and env in self.env:
            return env, self.env[env]
        return None

    def _bad(self, where: str, value: str, expected: str) -> None:
        problem = f"{where}: expected {expected}, got {value!r}; ignored"
        log.warning("pod app config: %s", problem)
        self.problems.append(problem)

    def string(self, flag: str | None, env: str | None, default: str) -> str:
        found = self._raw(flag, env)
        return default if found is None else found[1]

    def boolean(self, flag: str | None, env: str | None, default: bool) -> bool:
        found = self._raw(flag, env)
        if found is None:
            return default
        value = found[1].strip().lower()
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        self._bad(found[0], found[1], "a boolean (true/false/1/0)")
        return default

    def integer(self, flag: str | None, env: str | None, default: int, lo: int, hi: int) -> int:
        found = self._raw(flag, env)
        if found is None:
            return default
        try:
            value = int(found[1].strip())
        except ValueError:
            self._bad(found[0], found[1], f"an integer in [{lo}, {hi}]")
            return default
        if not lo <= value <= hi:
            self._bad(found[0], found[1], f"an integer in [{lo}, {hi}]")
            return default
        return value

    def number(
        self, flag: str | None, env: str | None, default: float, lo: float, hi: float
    ) -> float:
        found = self._raw(flag, env)
        if found is None:
            return default
        try:
            value = float(found[1].strip())
        except ValueError:
            self._bad(found[0], found[1], f"a number in [{lo}, {hi}]")
            return default
        if not lo <= value <= hi:  # also rejects NaN
            self._bad(found[0], found[1], f"a number in [{lo}, {hi}]")
            return default
        return value


def parse_container(container: Mapping[str, Any], *, hostname: str = "podinfo") -> AppConfig:
    """Build the app's behaviour from one container of a pod spec (``image``, ``env``,
    ``command``, ``args``). Never raises on bad values; see ``AppConfig.problems``."""
    image = str(container.get("image") or "")
    version = image_version(image)
    words = [*(container.get("command") or ()), *(container.get("args") or ())]
    env = env_pairs(container.get("env"))
    read = _Reader(parse_flags(words), dict(env))

    def podinfo_env(flag: str) -> str:
        return "PODINFO_" + flag.upper().replace("-", "_")

    def opt(flag: str) -> tuple[str, str]:
        return flag, podinfo_env(flag)

    unit = read.string(*opt("random-delay-unit"), "s")
    if unit not in ("s", "ms"):
        read._bad("--random-delay-unit", unit, '"s" or "ms"')
        unit = "s"
    delay_min = read.integer(*opt("random-delay-min"), 0, 0, 3600_000)
    delay_max = read.integer(*opt("random-delay-max"), 5, 0, 3600_000)
    if delay_max < delay_min:
        read._bad(
            "--random-delay-max", str(delay_max), f"a value >= --random-delay-min ({delay_min})"
        )
        delay_min, delay_max = 0, 5
    latency_ms = read.number(None, "SANDBOX_LATENCY_MS", 0.0, 0.0, 600_000.0)
    never_ready = read.boolean(None, "SANDBOX_NEVER_READY", False)
    return AppConfig(
        image=image,
        version=version,
        revision=image_revision(image),
        hostname=hostname,
        port=read.integer(*opt("port"), DEFAULT_PORT, 1, 65535),
        level=read.string(*opt("level"), "info"),
        color=read.string(*opt("ui-color"), DEFAULT_COLOR),
        message=read.string(*opt("ui-message"), f"greetings from podinfo v{version}"),
        random_error=read.boolean(*opt("random-error"), False),
        random_delay=read.boolean(*opt("random-delay"), False),
        random_delay_min=delay_min,
        random_delay_max=delay_max,
        random_delay_unit_s=1.0 if unit == "s" else 0.001,
        error_rate=read.number(None, "SANDBOX_ERROR_RATE", 0.0, 0.0, 1.0),
        latency_s=latency_ms / 1000.0,
        never_ready=never_ready or read.boolean(*opt("unready"), False),
        unhealthy=read.boolean(*opt("unhealthy"), False),
        env=env,
        problems=tuple(read.problems),
    )

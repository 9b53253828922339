"""Sluice's one exception hierarchy.

Every error carries the retry decision, so a message handler never has to guess whether
to terminate a message or redeliver it later::

    SluiceError
    ├── PermanentError            retrying cannot help: terminate the message, fail the step
    │   ├── InvalidInput          bad manifest, bad message, bad setting (names the field path)
    │   ├── NotFound              the named object does not exist
    │   └── Unsupported           valid input that this provider or mode cannot do
    └── TemporaryError            may succeed later: nak with a delay, retry the step
        ├── Conflict              stale revision / resourceVersion (compare-and-set lost)
        ├── Timeout               a network call did not answer in time
        ├── Unavailable           the other side is down or refused the connection
        └── NoValuesFound         a metric query returned no sample or NaN

Third-party exceptions (nats, aiohttp, kubernetes ApiException, requests) are wrapped at the
adapter boundary with ``raise ... from exc`` and never cross it.
"""

from __future__ import annotations


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose."""

    temporary: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PermanentError(SluiceError):
    """Retrying the same input cannot succeed."""

    temporary = False


class TemporaryError(SluiceError):
    """The same input may succeed later; redeliver after a delay."""

    temporary = True


class InvalidInput(PermanentError):
    """Input that breaks a rule; the message names the field path and what was expected."""

    def __init__(self, message: str, *, path: str = "", expected: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.expected = expected


class NotFound(PermanentError):
    """The named object does not exist."""


class Unsupported(PermanentError):
    """Valid input this provider, mode or version cannot carry out."""


class Conflict(TemporaryError):
    """A compare-and-set lost: the object changed since it was read."""


class Timeout(TemporaryError):
    """A network call did not answer within its timeout."""


class Unavailable(TemporaryError):
    """The other side is down, unreachable or refused the request for now."""


class NoValuesFound(TemporaryError):
    """A metric query answered with no sample or with NaN."""

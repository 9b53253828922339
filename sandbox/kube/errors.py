"""The store's errors; each maps to one Kubernetes ``Status`` reason and code (see ``status``)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors; each maps to one Kubernetes ``Status`` reason and code.

    ``name``, ``group`` and ``kind`` fill the ``details`` of the ``Status``; ``causes`` are
    ``StatusCause`` dicts (reason, message, field) for ``Invalid``.
    """

    reason = "InternalError"
    code = 500

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = causes or []


class NotFound(StoreError):
    reason = "NotFound"
    code = 404


class AlreadyExists(StoreError):
    reason = "AlreadyExists"
    code = 409


class Conflict(StoreError):
    reason = "Conflict"
    code = 409


class Invalid(StoreError):
    reason = "Invalid"
    code = 422


class Gone(StoreError):
    reason = "Expired"
    code = 410


class Forbidden(StoreError):
    reason = "Forbidden"
    code = 403

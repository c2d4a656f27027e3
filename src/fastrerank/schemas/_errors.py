"""The kinds of refusal a rerank API answers with, each mapped to its HTTP status once.

A body that does not fit the schema is a :class:`~fastrerank.errors.SchemaError` (a
``ValueError``); everything else the server refuses (no key, too large, busy, shutting down, a
wrong method) is a :class:`ServiceError` of one :class:`ErrorKind`. Each API shape maps a kind
to its own error code once, in its ``build_error``.
"""

from __future__ import annotations

import enum

from fastrerank.errors import FastRerankError, SchemaError

__all__ = ["ApiError", "ErrorKind", "ServiceError", "error_kind"]


class ErrorKind(enum.Enum):
    """Why a request was refused; ``status`` is its HTTP status."""

    VALIDATION = "validation"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    TOO_LARGE = "too_large"
    OVERLOADED = "overloaded"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"

    @property
    def status(self) -> int:
        """The HTTP status of this kind."""
        return _STATUS[self]


_STATUS = {
    ErrorKind.VALIDATION: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.METHOD_NOT_ALLOWED: 405,
    ErrorKind.REQUEST_TIMEOUT: 408,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.OVERLOADED: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
}
_BY_STATUS = {status: kind for kind, status in _STATUS.items()}


class ServiceError(FastRerankError):
    """A request the server refuses for a reason other than its body's schema.

        >>> ServiceError(ErrorKind.OVERLOADED, "server busy").status
        429
    """

    def __init__(self, kind: ErrorKind, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field

    @property
    def status(self) -> int:
        """The HTTP status of the kind."""
        return self.kind.status


ApiError = SchemaError | ServiceError
"""What every shape's ``build_error`` accepts."""


def error_kind(error: ApiError) -> ErrorKind:
    """The kind of ``error``: a :class:`ServiceError`'s own; a :class:`SchemaError` is a
    validation error (one built with another ``status``, as older callers did, keeps it)."""
    if isinstance(error, ServiceError):
        return error.kind
    return _BY_STATUS.get(error.status, ErrorKind.INTERNAL if error.status >= 500 else ErrorKind.VALIDATION)

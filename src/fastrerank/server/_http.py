"""The HTTP edges of a request: the API key, the request id, and the bounded, timed body.

Request bodies are bounded three ways: one body by ``max_body_bytes`` (413), the bodies of all
requests in flight together by a :class:`BodyBudget` (429 at once, before the bytes are read),
and the time to receive one body by ``body_timeout`` (408), so a client that sends all but the
last byte holds neither memory nor a connection for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.requests import Request
from starlette.types import Receive

from fastrerank.errors import SchemaError, describe_value
from fastrerank.schemas import ErrorKind, ServiceError

__all__ = ["BODY_READ", "BodyBudget", "authorized", "check_api_key", "read_body", "request_id", "wait_disconnect"]

BODY_READ = "fastrerank.body_read"
"""Set in ``scope["state"]`` once the whole body has been read: an answer given before that
closes the connection (what is left of the body would be read as the next request)."""

# What an incoming X-Request-Id may be: short, printable, no spaces (it goes into logs as is).
_REQUEST_ID = re.compile(r"[!-~]{1,128}")


def request_id(header: str | None) -> str:
    """The client's ``X-Request-Id`` when it is a short printable token, else a new UUID."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return str(uuid.uuid4())


def authorized(request: Request, api_key: str | None) -> bool:
    """Whether the request carries the key (always, when the server has none).

    Accepts ``Authorization: Bearer <key>`` or the bare key (as DMXAPI's client sends it),
    compared in constant time on bytes (``hmac.compare_digest`` raises on non-ASCII ``str``):
    the header's raw bytes (Starlette decodes headers as latin-1, so ``encode("latin-1")`` gives
    them back) against the key's UTF-8.
    """
    if api_key is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else header.strip()
    return hmac.compare_digest(given.encode("latin-1"), api_key.encode())


def check_api_key(request: Request, api_key: str | None) -> None:
    """Raise a 401 :class:`ServiceError` unless :func:`authorized`; it says nothing about which
    part was wrong."""
    if not authorized(request, api_key):
        raise ServiceError(ErrorKind.UNAUTHORIZED, "missing or invalid API key")


class BodyBudget:
    """The bytes of request bodies the server holds at once, all requests together.

    A request reserves its ``Content-Length`` before reading (a chunked one, each chunk as it
    comes) and keeps the reservation until its response is built; a reservation that does not
    fit is refused at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    @contextlib.asynccontextmanager
    async def account(self) -> AsyncIterator[Callable[[int], None]]:
        """A ``reserve(total)`` function for one request; everything it reserved is given back
        on exit."""
        reserved = 0

        def reserve(total: int) -> None:
            nonlocal reserved
            more = total - reserved
            if more <= 0:
                return
            if self.held + more > self.limit:
                raise ServiceError(
                    ErrorKind.OVERLOADED,
                    f"server busy: {self.limit} bytes of request bodies already in flight; retry later",
                )
            self.held += more
            reserved = total

        try:
            yield reserve
        finally:
            self.held -= reserved


async def read_body(request: Request, *, limit: int, timeout: float, reserve: Callable[[int], None]) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes, and
    with 408 when it has not all arrived ``timeout`` seconds after the request's head.

    A ``Content-Length`` over the limit is refused before any byte is read; a chunked body (or
    one whose length header lies) is refused at the first chunk that crosses the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise SchemaError(f"invalid Content-Length {describe_value(declared)}")
        if int(declared) > limit:
            raise ServiceError(ErrorKind.TOO_LARGE, _too_large(limit, int(declared)))
        reserve(int(declared))

    chunks: list[bytes] = []
    size = 0
    try:
        # A cancel scope in this task (not wait_for's extra task, whose failure would keep
        # the bytes read so far alive in a reference cycle until the garbage collector runs).
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ServiceError(ErrorKind.TOO_LARGE, _too_large(limit))
                reserve(size)
                chunks.append(chunk)
    except TimeoutError:
        raise ServiceError(
            ErrorKind.REQUEST_TIMEOUT, f"request body not received within {timeout:g} s"
        ) from None
    request.scope.setdefault("state", {})[BODY_READ] = True
    return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has disconnected (call it after the body has been read)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return
        await asyncio.sleep(0.05)  # not a disconnect (a spurious wake-up): do not spin


def _too_large(limit: int, size: int | None = None) -> str:
    got = f", got {size} bytes" if size is not None else ""
    return f"request body too large: at most {limit} bytes{got}"

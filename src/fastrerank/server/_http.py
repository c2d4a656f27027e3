"""The HTTP edges of a request: the API key and the size-limited body."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from fastrerank.errors import SchemaError

__all__ = ["check_api_key", "read_body"]


def check_api_key(request: Request, api_key: str | None) -> None:
    """Accept ``Authorization: Bearer <key>`` (or the bare key, as DMXAPI's client sends it).

    Compared in constant time on bytes (``hmac.compare_digest`` raises on non-ASCII ``str``):
    the header's raw bytes (Starlette decodes headers as latin-1, so ``encode("latin-1")``
    gives them back) against the key's UTF-8. The 401 says nothing about which part was wrong.
    """
    if api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else header.strip()
    if not hmac.compare_digest(given.encode("latin-1"), api_key.encode()):
        raise SchemaError("missing or invalid API key", status=401)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before any byte is read; a chunked body (or
    one whose length header lies) is refused at the first chunk that crosses the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise SchemaError(f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise SchemaError(_too_large(limit, int(declared)), status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise SchemaError(_too_large(limit), status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, size: int | None = None) -> str:
    got = f", got {size} bytes" if size is not None else ""
    return f"request body too large: at most {limit} bytes{got}"

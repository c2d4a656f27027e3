"""The ASGI layer around the app: the request id in and out, the access log, request metrics.

One log line per request on the ``fastrerank.server.access`` logger (INFO), as ``key=value``
pairs, with the same fields as a dict in the record's ``fastrerank`` attribute for structured
formatters::

    request_id=3f1c... method=POST path=/v1/rerank status=200 duration_ms=12.4 client=127.0.0.1 \
model=bge documents=3 tokens=48

The library configures no logging; the ``fastrerank`` command does, for its own process.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastrerank.errors import shorten
from fastrerank.server._http import request_id
from fastrerank.server._metrics import Metrics, _NoMetrics

__all__ = ["AccessLog", "RECORD"]

logger = logging.getLogger("fastrerank.server.access")

RECORD = "fastrerank"
"""The key in ``scope["state"]`` where an endpoint adds fields to the access-log line."""


class AccessLog:
    """Wraps an ASGI app: ``X-Request-Id`` (the client's when it is a short token, else a new
    UUID) in ``scope["state"]["request_id"]`` and on every response; a log line and the request
    metrics once the response is sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics | _NoMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
        rid = request_id(header.decode("latin-1") if header is not None else None)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        record: dict[str, Any] = {}
        state[RECORD] = record
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers (the server's 500)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(template, scope["method"], status, seconds)
            if logger.isEnabledFor(logging.INFO):
                self._log(scope, rid, status, seconds, record)

    @staticmethod
    def _log(scope: Scope, rid: str, status: int, seconds: float, record: dict[str, Any]) -> None:
        client = scope.get("client")
        fields = {
            "request_id": rid,
            "method": scope["method"],
            "path": shorten(scope["path"]),
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client": client[0] if client else None,
            **record,
        }
        logger.info(" ".join(f"{key}={_show(value)}" for key, value in fields.items()), extra={RECORD: fields})


def _show(value: object) -> str:
    """A value for a ``key=value`` line: quoted when it has spaces, quotes or is empty."""
    text = "-" if value is None else str(value)
    if not text or any(c in text for c in ' "=') or not text.isprintable():
        return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    return text

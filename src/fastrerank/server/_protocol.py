"""uvicorn's h11 protocol with the two guards it lacks: a request-head timeout and a cap on
open connections.

uvicorn times out idle keep-alive connections, but not a new connection that sends nothing nor
one that sends half a request head: each holds a descriptor forever, and at the descriptor
limit nobody is served. Here a connection has ``header_timeout`` seconds to send a whole head
(from when it opens, or from the first byte of the next head on a kept-alive connection), and a
connection over ``max_connections`` is closed as soon as it opens.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["guarded_protocol"]

logger = logging.getLogger("fastrerank.server")


class _GuardedH11(H11Protocol):
    header_timeout: float = 10.0
    max_connections: int = 512
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            logger.debug("over %d open connections: closing a new one", self.max_connections)
            transport.abort()  # frees the descriptor now; connection_lost follows
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_head():
            self._await_head()
        else:
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        self._stop_head_timer()  # the next head gets a fresh deadline; idle time is keep-alive's
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_head(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedH11Protocol",
        (_GuardedH11,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )

"""Admission control: at most ``max_concurrency`` rankings run, at most ``max_queue`` wait.

Inference runs in a thread pool of ``max_concurrency`` threads, never on the event loop. A
request that finds every running slot and every queue place taken is refused at once (429);
one that waits in the queue longer than ``queue_timeout`` seconds is refused (503) and its work
never starts: work enters the thread pool only once it holds a slot, because CTranslate2 cannot
cancel a batch that has started. A slot is freed when the thread finishes, not when the request
goes away, so a client that disconnects mid-ranking cannot make the pool oversubscribed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastrerank.errors import SchemaError

__all__ = ["Admission", "ClientGone"]

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected while its request waited; the work was dropped."""


class Admission:
    """A bounded queue in front of a thread pool; see the module docstring."""

    def __init__(self, max_concurrency: int, max_queue: int, queue_timeout: float) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="fastrerank-rank")
        self._running = 0
        self._admitted = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        """Rankings holding a slot (running, or handed a slot and about to run)."""
        return self._running

    async def run(self, work: Callable[[], T], client_gone: Callable[[], Awaitable[bool]]) -> T:
        """Run ``work`` in the pool once a slot is free.

        Raises :class:`SchemaError` with status 429 when the queue is full, 503 after
        ``queue_timeout`` seconds in the queue, and :class:`ClientGone` when ``client_gone``
        says the client left while the request waited.
        """
        if self._admitted >= self.max_concurrency + self.max_queue:
            raise SchemaError(
                f"server busy: {self.max_concurrency} rankings running and {self.max_queue} "
                "queued; retry later",
                status=429,
            )
        self._admitted += 1
        try:
            waited = await self._acquire()
            if waited and await self._client_gone(client_gone):
                raise ClientGone
            loop = asyncio.get_running_loop()

            def job() -> T:
                try:
                    return work()
                finally:
                    loop.call_soon_threadsafe(self._release)

            return await loop.run_in_executor(self._executor, job)
        finally:
            self._admitted -= 1

    async def _client_gone(self, client_gone: Callable[[], Awaitable[bool]]) -> bool:
        """Ask ``client_gone``; when it says yes (or fails), give the slot back."""
        try:
            gone = await client_gone()
        except BaseException:
            self._release()
            raise
        if gone:
            self._release()
        return gone

    async def _acquire(self) -> bool:
        """Take a slot; returns whether the request had to wait for it."""
        if self._running < self.max_concurrency and not self._waiters:
            self._running += 1
            return False
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(slot)
        try:
            await asyncio.wait_for(asyncio.shield(slot), self.queue_timeout)
        except BaseException as err:
            if slot.done() and not slot.cancelled():
                self._release()  # handed a slot as the wait ended: pass it on
            else:
                slot.cancel()
            if isinstance(err, asyncio.TimeoutError):
                raise SchemaError(
                    f"server busy: waited more than {self.queue_timeout:g} s for a free slot; "
                    "retry later",
                    status=503,
                ) from None
            raise
        return True

    def _release(self) -> None:
        """Free a slot: hand it to the oldest live waiter, else count it free."""
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes over; _running is unchanged
                return
        self._running -= 1

    def shutdown(self) -> None:
        """Stop the pool; queued pool work (there is none once requests are done) is cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)

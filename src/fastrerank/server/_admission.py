"""Admission control: at most ``max_concurrency`` rankings run, at most ``max_queue`` wait.

Inference runs in a thread pool of ``max_concurrency`` threads, never on the event loop. A
request that finds every running slot and every queue place taken is refused at once (429);
one that waits in the queue longer than ``queue_timeout`` seconds is refused (503) and its work
never starts: work enters the thread pool only once it holds a slot, because CTranslate2 cannot
cancel a batch that has started. A waiter whose client disconnects gives its queue place back at
once. A slot is freed when the thread finishes, not when the request goes away, so a client that
disconnects mid-ranking cannot make the pool oversubscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastrerank.schemas import ErrorKind, ServiceError

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
        self._holding = 0  # admitted requests whose work is in the pool
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        """Rankings holding a slot (running, or handed a slot and about to run)."""
        return self._running

    @property
    def waiting(self) -> int:
        """Requests admitted that do not hold a slot yet (the queue's depth)."""
        return self._admitted - self._holding

    async def run(self, work: Callable[[], T], disconnected: Callable[[], Awaitable[None]]) -> T:
        """Run ``work`` in the pool once a slot is free.

        ``disconnected()`` returns when the client goes away. Raises :class:`ServiceError`
        ``OVERLOADED`` (429) when the queue is full, ``UNAVAILABLE`` (503) after
        ``queue_timeout`` seconds in the queue, and :class:`ClientGone` as soon as the client
        leaves while the request waits.
        """
        if self._admitted >= self.max_concurrency + self.max_queue:
            raise ServiceError(
                ErrorKind.OVERLOADED,
                f"server busy: {self.max_concurrency} rankings running and {self.max_queue} "
                "queued; retry later",
            )
        self._admitted += 1
        try:
            await self._acquire(disconnected)
            loop = asyncio.get_running_loop()

            def job() -> T:
                try:
                    return work()
                finally:
                    # The loop may be gone when a ranking outlives a forced shutdown.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(self._release)

            self._holding += 1
            try:
                return await loop.run_in_executor(self._executor, job)
            finally:
                self._holding -= 1
        finally:
            self._admitted -= 1

    async def _acquire(self, disconnected: Callable[[], Awaitable[None]]) -> None:
        """Take a slot, waiting up to ``queue_timeout`` and only while the client is there."""
        if self._running < self.max_concurrency and not self._waiters:
            self._running += 1
            return
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(slot)
        gone = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({slot, gone}, timeout=self.queue_timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._leave(slot)
            raise
        finally:
            gone.cancel()
        if slot.done() and not gone.done():
            return
        self._leave(slot)
        if gone.done() and not gone.cancelled():
            gone.exception()  # retrieved: a receive that failed means the client is gone too
            raise ClientGone
        raise ServiceError(
            ErrorKind.UNAVAILABLE,
            f"server busy: waited more than {self.queue_timeout:g} s for a free slot; retry later",
        )

    def _leave(self, slot: asyncio.Future[None]) -> None:
        """Give up a queue place; a slot handed over as the wait ended is passed on."""
        if slot.done() and not slot.cancelled():
            self._release()
        else:
            slot.cancel()

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

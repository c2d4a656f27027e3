"""Run a call's batches on several encoder replicas at once, and hand their results to the caller.

CTranslate2 runs one batch per replica, and ``forward_batch`` blocks its calling thread (with the
GIL released) until that batch is done; it has no asynchronous form for encoders. To keep
``replicas`` batches in flight, a call with more than one batch starts up to that many
short-lived threads, which take the batches in their given order (longest first: the long ones
start early and the short ones fill the gaps at the end) and queue what they return. Everything
else happens on the calling thread: the results are delivered there, in completion order, so
that the head, the progress callback and any error run where the caller expects them.

The threads live only as long as the call: nothing outlives it, nothing is shared between calls,
and a process forked meanwhile inherits no pool (the fork waits for the batches in progress, see
:mod:`fastrerank._engine.fork_gate`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import InferenceError

__all__ = ["join_all", "run_batches"]

# A progress callback that forks: the child returns into the call, whose batch threads (and, with
# one replica, whose encoder) exist only in the parent. Waiting for them would hang forever.
FORKED_DURING_CALL = ("this process was forked during the call (from its progress callback): the call cannot go on "
                      "in the child; call the Reranker again there")

B = TypeVar("B")
R = TypeVar("R")


def run_batches(run: Callable[[B], R], batches: Sequence[B], workers: int, on_result: Callable[[int, R], None], *,
                off_caller: bool = False) -> None:
    """Call ``run`` on every batch, up to ``workers`` at a time, and ``on_result(index, result)`` for each.

    ``on_result`` is called on the calling thread, once per batch, in completion order. The first
    exception raised by ``run`` or ``on_result`` stops the call: batches not yet started are
    skipped, the ones in progress are waited for (so that none is still using the encoder when
    this returns, even if a second Ctrl-C comes meanwhile), and the exception is raised here. With
    one worker or one batch, or where no thread can be started, everything runs on the calling
    thread, unless ``off_caller``: then ``run`` never runs there while a thread can be started.
    """
    if not off_caller and (workers <= 1 or len(batches) <= 1):
        _run_here(run, batches, on_result)
        return
    workers = max(1, workers)
    pid = os.getpid()

    done: queue.SimpleQueue[tuple[int, R | None, BaseException | None]] = queue.SimpleQueue()
    claim = threading.Lock()
    next_index = 0
    stop = False

    def work() -> None:
        nonlocal next_index
        while True:
            with claim:
                if stop or next_index == len(batches):
                    return
                index = next_index
                next_index += 1
            try:
                done.put((index, run(batches[index]), None))
            except BaseException as err:  # raised on the calling thread below
                done.put((index, None, err))
                return

    started: list[threading.Thread] = []
    try:
        for _ in range(min(workers, len(batches))):
            thread = threading.Thread(target=work, name="fastrerank-batch", daemon=True)
            # Listed before start(): a Ctrl-C can come out of start() once the thread runs.
            started.append(thread)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (a pids limit, interpreter shutdown): use those started
                started.pop()
                break
        if not started:
            _run_here(run, batches, on_result)
            return
        for _ in batches:
            index, result, error = done.get()
            if error is not None:
                raise error
            on_result(index, result)  # type: ignore[arg-type]  # a result, since error is None
            if os.getpid() != pid:
                raise InferenceError(FORKED_DURING_CALL)
    finally:
        stop = True  # a plain store: the workers read it under the claim lock before each batch
        join_all(started)


def _run_here(run: Callable[[B], R], batches: Sequence[B], on_result: Callable[[int, R], None]) -> None:
    pid = os.getpid()
    for index, batch in enumerate(batches):
        on_result(index, run(batch))
        if os.getpid() != pid:
            raise InferenceError(FORKED_DURING_CALL)


def join_all(threads: list[threading.Thread]) -> None:
    """Join every thread, even through an exception (a second Ctrl-C) raised while waiting; re-raise it after."""
    interrupted: BaseException | None = None
    for thread in threads:
        while True:
            try:
                thread.join()
                break
            except RuntimeError:
                # Not begun yet (Ctrl-C came out of its start() first): it sees ``stop`` and runs no batch.
                break
            except BaseException as err:  # keep waiting: the thread is using the encoder
                interrupted = err
    if interrupted is not None:
        raise interrupted

"""``run_batches`` (``fastrerank._engine.dispatch``): batches on several replicas at once, results on the caller's thread.

Concurrency is proven with barriers, never with timings: a barrier of two only opens when two
batches are running at the same moment, and every wait is bounded.
"""

from __future__ import annotations

import threading
import time

import pytest

from fastrerank._engine.dispatch import run_batches

WAIT_S = 10.0


def _batch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "fastrerank-batch"]


def test_two_workers_run_two_batches_at_once_and_deliver_on_the_calling_thread() -> None:
    both_running = threading.Barrier(2, timeout=WAIT_S)  # broken (an error) if the batches ran one after the other
    delivered: list[tuple[int, str, int]] = []

    def run(batch: str) -> str:
        both_running.wait()
        return batch.upper()

    run_batches(run, ["a", "b"], 2, lambda index, result: delivered.append((index, result, threading.get_ident())))
    assert sorted(delivered) == [(0, "A", threading.get_ident()), (1, "B", threading.get_ident())]
    assert _batch_threads() == []  # the threads end with the call


def test_every_batch_is_run_and_delivered_once() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def run(batch: int) -> int:
        with lock:
            calls.append(batch)
        return batch * 10

    delivered: list[tuple[int, int]] = []
    run_batches(run, list(range(50)), 3, lambda index, result: delivered.append((index, result)))
    assert sorted(calls) == list(range(50))
    assert sorted(delivered) == [(i, i * 10) for i in range(50)]


@pytest.mark.parametrize("workers", [1, 4])
def test_one_worker_or_one_batch_runs_on_the_calling_thread(workers: int) -> None:
    callers: list[int] = []

    def run(batch: int) -> int:
        callers.append(threading.get_ident())
        return batch * 2

    results: list[tuple[int, int]] = []
    run_batches(run, [1, 2, 3] if workers == 1 else [7], workers, lambda i, r: results.append((i, r)))
    assert results == ([(0, 2), (1, 4), (2, 6)] if workers == 1 else [(0, 14)])
    assert set(callers) == {threading.get_ident()}


def test_no_batches_calls_nothing() -> None:
    run_batches(lambda batch: pytest.fail("called"), [], 2, lambda i, r: pytest.fail("delivered"))


def test_an_error_in_a_batch_is_raised_and_no_batch_is_left_running() -> None:
    running = 0
    lock = threading.Lock()
    release = threading.Event()

    def run(batch: int) -> int:
        nonlocal running
        with lock:
            running += 1
        try:
            if batch == 0:
                raise ValueError("batch 0 failed")
            release.wait(WAIT_S)  # the other worker is mid-batch when the error reaches the caller
            return batch
        finally:
            with lock:
                running -= 1

    timer = threading.Timer(0.2, release.set)  # lets the batch in progress end; the call must wait for it
    timer.start()
    try:
        with pytest.raises(ValueError, match="batch 0 failed"):
            run_batches(run, list(range(10)), 2, lambda index, result: None)
    finally:
        timer.cancel()
    assert running == 0 and _batch_threads() == []


def test_an_error_on_the_calling_thread_stops_the_workers() -> None:
    # The progress callback (or the head) fails while both workers are mid-batch: they finish
    # those, start no other one (bar a few already claimed), and are gone when the error arrives.
    started: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def run(batch: int) -> int:
        with lock:
            started.append(batch)
        if batch:
            release.wait(WAIT_S)
            time.sleep(0.001)  # a batch takes time and lets the calling thread run
        return batch

    def on_result(index: int, result: int) -> None:
        release.set()
        raise KeyboardInterrupt  # what Ctrl-C raises in the waiting caller

    with pytest.raises(KeyboardInterrupt):
        run_batches(run, list(range(1000)), 2, on_result)
    assert _batch_threads() == []
    assert len(started) < 1000, len(started)  # in practice 3-4: each batch after the error takes 1 ms


def test_where_no_thread_can_be_started_the_batches_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    callers: set[int] = set()

    def run(batch: int) -> int:
        callers.add(threading.get_ident())
        return -batch

    results: list[tuple[int, int]] = []
    run_batches(run, [1, 2, 3], 2, lambda index, result: results.append((index, result)))
    assert results == [(0, -1), (1, -2), (2, -3)] and callers == {threading.get_ident()}


@pytest.mark.parametrize(("workers", "batches"), [(1, ["a"]), (1, ["a", "b", "c"]), (4, ["a"])])
def test_off_caller_never_runs_a_batch_on_the_calling_thread(workers: int, batches: list[str]) -> None:
    # CUDA's case (runtime.EncoderRuntime.call): a batch run on the caller's thread would give it a
    # CTranslate2 CUDA stream that aborts a process forked later, at its exit.
    caller = threading.get_ident()
    ran_on: list[int] = []
    delivered_on: list[int] = []

    def run(batch: str) -> str:
        ran_on.append(threading.get_ident())
        return batch.upper()

    got: dict[int, str] = {}

    def on_result(index: int, result: str) -> None:
        delivered_on.append(threading.get_ident())
        got[index] = result

    run_batches(run, batches, workers, on_result, off_caller=True)
    assert got == {i: b.upper() for i, b in enumerate(batches)}
    assert len(ran_on) == len(batches) and caller not in ran_on
    assert set(delivered_on) == {caller}
    assert _batch_threads() == []

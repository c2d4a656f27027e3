"""A Reranker's life: close() and clear_cache() never cut a call in flight, bounded threads,
and copies and pickles that load their own model instead of sharing one."""

from __future__ import annotations

import copy
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

import fastrerank
from fastrerank import InvalidInputError, ModelClosedError, Reranker
from fastrerank._engine import runtime as runtime_module
from fastrerank.testing import make_corpus

from .reliability_helpers import describe, run_python

QUERY = "apple fruit"
DOCS = [" ".join(make_corpus(40, seed=i)) for i in range(24)]


@pytest.mark.parametrize("threads", [1, 2], ids=["one replica", "two replicas"])
def test_close_waits_for_a_call_of_many_batches(threads: int, converted) -> None:  # type: ignore[no-untyped-def]
    folder = converted("tiny")
    expected = Reranker(folder, threads=threads, replicas=threads, batch_tokens=64).score(QUERY, DOCS)
    reranker = Reranker(folder, threads=threads, replicas=threads, batch_tokens=64)  # one window a batch: many batches
    first_batch_done, outcome = threading.Event(), {}

    def after_batch(done: int, total: int) -> None:
        if done == 1:
            first_batch_done.set()
            for _ in range(500):  # hold the call open until close() has begun (bounded: 5 s)
                if reranker._runtime._closed:
                    break
                threading.Event().wait(0.01)

    def call() -> None:
        try:
            outcome["scores"] = reranker.score(QUERY, DOCS, progress=after_batch)
        except Exception as err:  # reported below
            outcome["error"] = err

    caller = threading.Thread(target=call)
    caller.start()
    assert first_batch_done.wait(30)
    reranker.close()  # returns only after the call that started before it
    caller.join(30)
    assert "error" not in outcome, outcome.get("error")
    np.testing.assert_array_equal(outcome["scores"], expected)
    with pytest.raises(ModelClosedError, match="Reranker was closed"):
        reranker.score(QUERY, DOCS[:1])


def test_calls_after_close(converted) -> None:  # type: ignore[no-untyped-def]
    """Every call after close() raises ModelClosedError (a RuntimeError); close() is idempotent and ends a with block."""
    reranker = Reranker(converted("tiny"), threads=1)
    assert len(reranker.rank(QUERY, DOCS)) == len(DOCS)
    reranker.close()
    reranker.close()  # idempotent
    for call in (lambda: reranker.rank(QUERY, DOCS), lambda: reranker.score(QUERY, DOCS), lambda: reranker.rank(QUERY, [])):
        with pytest.raises(ModelClosedError, match=r"^Reranker was closed$"):
            call()
    with Reranker(converted("tiny"), threads=1) as managed:
        managed.score(QUERY, DOCS)
    with pytest.raises(ModelClosedError):
        managed.score(QUERY, DOCS)
    assert isinstance(ModelClosedError("x"), RuntimeError)


def test_clear_cache_never_breaks_a_rank_call_in_flight(converted, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    folder = str(converted("tiny"))
    expected = Reranker(folder, threads=1).rank(QUERY, DOCS).to_dicts()
    real = runtime_module._first_token_states
    in_flight, outcome = threading.Event(), {}

    def first_batch_then_wait(encoder: object, rows: object, template: object = None) -> np.ndarray:
        states = real(encoder, rows, template)  # type: ignore[arg-type]
        if not in_flight.is_set():
            in_flight.set()
            for _ in range(500):  # until clear_cache() is closing the cached Reranker (bounded: 5 s)
                if any(r._runtime._closed for r in list(fastrerank._api._cache.values())):
                    break
                threading.Event().wait(0.01)
        return states

    monkeypatch.setattr(runtime_module, "_first_token_states", first_batch_then_wait)

    def call() -> None:
        try:
            outcome["ranking"] = fastrerank.rank(QUERY, DOCS, model=folder).to_dicts()
        except Exception as err:  # reported below
            outcome["error"] = err

    fastrerank.clear_cache()
    caller = threading.Thread(target=call)
    caller.start()
    assert in_flight.wait(30)
    fastrerank.clear_cache()
    caller.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["ranking"] == expected


def test_rank_retries_when_the_cache_was_cleared_between_lookup_and_call(converted, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    folder = str(converted("tiny"))
    real = fastrerank._api._default_reranker
    lookups: list[Reranker] = []

    def lookup_then_clear(*args: object) -> Reranker:
        reranker = real(*args)  # type: ignore[arg-type]
        lookups.append(reranker)
        if len(lookups) == 1:
            fastrerank.clear_cache()  # another thread clears right after this one looked up
        return reranker

    monkeypatch.setattr(fastrerank._api, "_default_reranker", lookup_then_clear)
    ranking = fastrerank.rank(QUERY, DOCS[:3], model=folder)
    assert len(ranking) == 3 and len(lookups) == 2 and lookups[0] is not lookups[1]
    fastrerank.clear_cache()


def test_threads_are_bounded_before_anything_loads(converted) -> None:  # type: ignore[no-untyped-def]
    # In a child: without the bound, 40,000 OpenMP threads end the process (100,000 segfault it).
    done = run_python("""
        import sys
        from fastrerank import InvalidInputError, Reranker
        from fastrerank._reranker import max_threads
        for threads in (40000, 100000, max_threads() + 1):
            try:
                Reranker(sys.argv[1], threads=threads)
            except InvalidInputError as err:
                print(err)
        """, converted("tiny"))
    from fastrerank._cpus import usable_cores

    limit = 4 * usable_cores()
    assert done.returncode == 0, describe(done)
    assert done.stdout.splitlines() == [f"threads must be in [0, {limit}], got {n}" for n in (40000, 100000, limit + 1)]


def test_threads_bound_keeps_valid_values(converted) -> None:  # type: ignore[no-untyped-def]
    from fastrerank._reranker import max_threads

    with Reranker(converted("tiny"), threads=max_threads()) as reranker:
        assert reranker.score(QUERY, DOCS[:2]).shape == (2,)
    with pytest.raises(InvalidInputError, match=r"threads must be in \[0, \d+\], got -1"):
        Reranker(converted("tiny"), threads=-1)


def test_a_reranker_pickles_by_model_and_options(converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    folder = converted("tiny")
    monkeypatch.chdir(folder.parent)
    original = Reranker(folder.name, threads=2, replicas=1, max_length=128, batch_tokens=256)  # a relative path
    expected = original.score(QUERY, DOCS)
    data = pickle.dumps(original)
    monkeypatch.chdir(tmp_path)  # the other side need not share the working directory
    restored = pickle.loads(data)
    assert restored is not original and restored._runtime is not original._runtime
    assert (restored.max_length, restored.batch_tokens, restored.model_path) == (128, 256, folder)
    assert (restored.threads, restored.replicas) == (2, 1)
    np.testing.assert_array_equal(restored.score(QUERY, DOCS), expected)
    restored.close()
    np.testing.assert_array_equal(original.score(QUERY, DOCS), expected)  # closing the copy left it open


@pytest.mark.parametrize("make_copy", [copy.copy, copy.deepcopy])
def test_closing_a_copy_never_closes_the_original(make_copy, converted) -> None:  # type: ignore[no-untyped-def]
    original = Reranker(converted("tiny"), threads=1)
    duplicate = make_copy(original)
    duplicate.close()
    assert original.score(QUERY, DOCS[:2]).shape == (2,)
    with pytest.raises(ModelClosedError):
        duplicate.score(QUERY, DOCS[:2])
    original.close()


def test_a_fork_waits_for_native_work_in_progress() -> None:
    """A fork never lands while another thread is inside CTranslate2 (a load, a batch): the child
    would inherit the locks that thread holds, and hang on its own first load."""
    done = run_python("""
        import os, threading, time
        from fastrerank._engine.fork_gate import native_section
        entered, left = threading.Event(), []
        def native_work():
            with native_section():
                entered.set()
                time.sleep(0.3)
                left.append(time.monotonic())
        worker = threading.Thread(target=native_work)
        worker.start()
        entered.wait()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            with native_section():  # the child's own sections work: it starts with a fresh gate
                os.write(write, repr(time.monotonic()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        forked_at = float(os.read(read, 100))
        worker.join()
        print(forked_at >= left[0])
        """, timeout=60)
    assert done.returncode == 0, describe(done)
    assert done.stdout.split() == ["True"]

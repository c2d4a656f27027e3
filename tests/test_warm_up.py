"""Loading on the CPU warms up every replica and waits until CTranslate2's threads sleep, so that a
fork right after the load copies no lock a worker took while setting itself up (``_engine.runtime``)."""

from __future__ import annotations

import threading
import time

import pytest

import fastrerank._engine.runtime as runtime_module
from fastrerank import Reranker


@pytest.mark.parametrize("replicas", [1, 2])
def test_every_replica_gets_a_warm_up_batch(replicas: int, converted, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    counts: list[int] = []
    real = runtime_module._on_threads

    def recording(count: int, function):  # type: ignore[no-untyped-def]
        counts.append(count)
        real(count, function)

    monkeypatch.setattr(runtime_module, "_on_threads", recording)
    with Reranker(converted("tiny", "int8"), device="cpu", threads=2, replicas=replicas) as reranker:
        assert reranker._runtime._encoder.num_encoders == replicas
    assert counts == [replicas]


def test_on_threads_runs_the_function_on_that_many_threads_at_once() -> None:
    all_there = threading.Barrier(3, timeout=10)  # broken (an error) unless three run at the same time
    seen: set[int] = set()

    def arrive() -> None:
        seen.add(threading.get_ident())
        all_there.wait()

    runtime_module._on_threads(3, arrive)
    assert len(seen) == 3 and threading.get_ident() not in seen
    assert not [thread for thread in threading.enumerate() if thread.name == "fastrerank-warm-up"]


def test_waiting_for_sleeping_and_finished_threads_returns_at_once() -> None:
    # A thread blocked on an event is asleep; an id that no longer exists counts as asleep. A wrong
    # reading of /proc would spend the whole (here generous) limit.
    release = threading.Event()
    sleeper = threading.Thread(target=release.wait, args=(30,))
    sleeper.start()
    gone = threading.Thread(target=lambda: None)
    gone.start()
    gone.join()
    try:
        start = time.monotonic()
        runtime_module._wait_until_asleep({sleeper.native_id, gone.native_id or 0}, limit_s=20.0)
        assert time.monotonic() - start < 10.0
    finally:
        release.set()
        sleeper.join()


def test_the_load_leaves_no_thread_of_its_own_behind(converted) -> None:  # type: ignore[no-untyped-def]
    with Reranker(converted("tiny", "int8"), device="cpu", threads=2):
        names = {thread.name for thread in threading.enumerate()}
    assert not names & {"fastrerank-load", "fastrerank-warm-up", "fastrerank-batch"}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_first_token_states_come_back_in_float32_whatever_the_output_type(dtype: str) -> None:
    # A GPU's float16 states cross to the host as they are and are converted by numpy; bfloat16
    # (compute_type="bfloat16" on a GPU) has no numpy type and is converted before crossing.
    # Checked with a stand-in encoder whose output is a CPU StorageView of that type.
    import ctranslate2
    import numpy as np

    values = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    states = ctranslate2.StorageView.from_array(values).to(getattr(ctranslate2.DataType, dtype))
    expected = np.asarray(states.to(ctranslate2.DataType.float32))[:, 0, :]

    class Output:
        last_hidden_state = states

    class Encoder:
        def forward_batch(self, ids, lengths):  # type: ignore[no-untyped-def]
            return Output()

    first = runtime_module._first_token_states(Encoder(), [[0, 5, 2], [0, 2], [0, 7, 7, 7, 2]])
    assert first.dtype == np.float32 and first.shape == (3, 8) and first.flags.c_contiguous
    np.testing.assert_array_equal(first, expected)

"""Ctrl-C while a batch thread starts, and close() from the progress callback: no batch left running, no self-deadlock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from fastrerank._engine.dispatch import run_batches

WAIT_S = 10.0


def _batch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "fastrerank-batch"]


def test_ctrl_c_landing_in_thread_start_leaves_no_batch_running(monkeypatch: pytest.MonkeyPatch) -> None:
    # Thread.start() waits (interruptibly) for the new thread to begin: a Ctrl-C arriving then is
    # raised out of start() although the thread runs. run_batches must still wait for its batch,
    # or the call returns (and close() may release the encoder) while that batch is inside it.
    # Seen with real signals: _thread.interrupt_main() at a random moment of a replicas=2 call
    # leaves a 'fastrerank-batch' thread running after the KeyboardInterrupt, about 1 call in 20.
    in_batch = threading.Event()
    active = 0
    lock = threading.Lock()
    real_start = threading.Thread.start

    def start_then_interrupted(self: threading.Thread) -> None:
        real_start(self)
        in_batch.wait(WAIT_S)  # the new thread is inside a batch...
        raise KeyboardInterrupt  # ...when Ctrl-C comes out of start()

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupted)

    def run(batch: int) -> int:
        nonlocal active
        with lock:
            active += 1
        in_batch.set()
        time.sleep(0.3)
        with lock:
            active -= 1
        return batch

    with pytest.raises(KeyboardInterrupt):
        run_batches(run, list(range(8)), 2, lambda index, result: None)
    still_running = active
    monkeypatch.undo()
    deadline = time.monotonic() + WAIT_S
    while _batch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert still_running == 0, "run_batches returned while a batch was still running"


CLOSE_IN_CALLBACK = textwrap.dedent("""
    import sys
    from fastrerank import Reranker
    from fastrerank.errors import ModelClosedError
    reranker = Reranker(sys.argv[1], device="cpu", threads=2, replicas=int(sys.argv[2]), batch_tokens=1)
    def progress(done, total):
        if done == 1:
            reranker.close()
    scores = reranker.score("query", ["one", "two", "three", "four"], progress=progress)
    assert len(scores) == 4 and reranker.closed
    try:
        reranker.score("query", ["one"])
    except ModelClosedError:
        print("ok")
""")


@pytest.mark.parametrize("replicas", [1, 2])
def test_close_from_the_progress_callback_does_not_deadlock(replicas: int, converted) -> None:  # type: ignore[no-untyped-def]
    # close() waits for the calls in flight, the caller's own call included: from the progress
    # callback it waits for itself forever. It should release the model when that call ends.
    try:
        done = subprocess.run([sys.executable, "-c", CLOSE_IN_CALLBACK, str(converted("tiny")), str(replicas)],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("close() called from the progress callback hangs the call")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


FORK_IN_CALLBACK = """
import json, os, signal, sys, time
from fastrerank import InferenceError, Reranker

reranker = Reranker(sys.argv[1], device="cpu", threads=2, replicas=int(sys.argv[2]), batch_tokens=16)
docs = [f"apple pie number {i}" for i in range(12)]
expected = reranker.score("apple", docs).tolist()
read, write = os.pipe()
forked = {}

def progress(done, total):
    if not forked:  # fork once, from the first callback; the child returns into the call
        forked["pid"] = os.fork()

try:
    got = reranker.score("apple", docs, progress=progress).tolist()
except InferenceError as err:
    if forked.get("pid") != 0:
        raise
    out = {"error": str(err)}
    out["again"] = reranker.score("apple", docs).tolist()  # a new call in the child works
    reranker.close()  # and close() does not wait for the call the fork carried over
    os.write(write, json.dumps(out).encode())
    os._exit(0)
if forked.get("pid") == 0:
    os.write(write, json.dumps({"completed": got}).encode())
    os._exit(0)
os.close(write)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    done, status = os.waitpid(forked["pid"], os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(forked["pid"], signal.SIGKILL)
    os.waitpid(forked["pid"], 0)
    print(json.dumps({"child": "hang"}))
    sys.exit(0)
child = json.loads(os.read(read, 1 << 16).decode() or "{}")
print(json.dumps({"parent_same": got == expected, "expected": expected, "child": child,
                  "child_exit": os.waitstatus_to_exitcode(status)}))
"""


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_fork_from_the_progress_callback_gives_the_child_an_error_not_a_hang(replicas: int, converted) -> None:  # type: ignore[no-untyped-def]
    # The child returns into a call whose batch threads (replicas=2) or encoder (replicas=1) exist
    # only in the parent: it used to wait for them forever.
    from .reliability_helpers import json_line, run_python

    out = json_line(run_python(FORK_IN_CALLBACK, converted("tiny"), replicas, timeout=180))
    assert out["parent_same"] is True
    child = out["child"]
    assert child != "hang" and out["child_exit"] == 0, out
    assert child["error"] == ("this process was forked during the call (from its progress callback): the call "
                              "cannot go on in the child; call the Reranker again there")
    np.testing.assert_allclose(child["again"], out["expected"], atol=1e-6, rtol=0)


def test_a_ctrl_c_during_a_model_load_waits_for_the_load_before_leaving_the_fork_gate() -> None:
    # The load runs on a helper thread inside a native section (no fork meanwhile). A Ctrl-C while
    # the caller waited used to leave the section at once, the load still running: a fork then
    # could copy the locks it held.
    import _thread

    from fastrerank._engine import fork_gate
    from fastrerank._engine.runtime import _on_helper_thread

    finished = threading.Event()
    gate_held_at_the_end: list[bool] = []

    def slow_load() -> str:
        _thread.interrupt_main()  # Ctrl-C, delivered while the caller waits for this thread
        time.sleep(0.3)
        gate_held_at_the_end.append(fork_gate._running > 0)
        finished.set()
        return "encoder"

    with pytest.raises(KeyboardInterrupt):
        _on_helper_thread(slow_load)
    assert finished.is_set(), "the interrupt came out while the load was still running"
    assert gate_held_at_the_end == [True] and fork_gate._running == 0
    assert not [t for t in threading.enumerate() if t.name == "fastrerank-load"]

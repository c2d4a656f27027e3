"""The CUDA paths, on a real GPU: skipped where CTranslate2 sees none (CI has none).

Run on a GPU machine with ``pytest tests/test_cuda.py`` (``benchmarks/gpu.sh --tests`` does, after
making CTranslate2's CUDA build loadable there). Scores are compared with the transformers
reference (float32, on the CPU) on the same weights; fork and spawn children run under deadlines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import ctranslate2
import numpy as np
import pytest

from fastrerank import ModelClosedError, Reranker

from .reference import reference_pair_logits, sigmoid
from .reliability_helpers import SRC, describe, json_line

pytestmark = pytest.mark.skipif(ctranslate2.get_cuda_device_count() == 0, reason="needs a CUDA device")

QUERY = "apple fruit"
DOCS = ["apple pie", "car engine", "fruit salad and apple", "the quick brown fox jumps over the lazy dog " * 6,
        "bananas", "an apple a day keeps the doctor away", "engines and gearboxes", "x"]


def _scores(reranker: Reranker, docs: list[str] = DOCS) -> np.ndarray:
    return np.asarray(reranker.score(QUERY, docs), dtype=np.float64)


def _reference(folder: Path, docs: list[str] = DOCS) -> np.ndarray:
    return sigmoid(reference_pair_logits(folder, QUERY, docs, 512))


def test_float32_on_cuda_scores_like_transformers(converted, hf_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with Reranker(converted("tiny"), device="cuda", compute_type="float32", threads=4) as reranker:
        assert (reranker.device, reranker.compute_type, reranker.replicas) == ("cuda", "float32", 4)
        got = _scores(reranker)
    # cuBLAS may sum in another order than the CPU reference, and use TF32: well inside 1e-3.
    np.testing.assert_allclose(got, _reference(hf_models["tiny"]), atol=1e-3, rtol=0)


def test_a_hugging_face_folder_converts_to_float16_on_cuda(hf_models: dict[str, Path], tmp_path: Path) -> None:
    with Reranker(hf_models["tiny"], device="cuda", cache_dir=tmp_path) as reranker:
        assert reranker.compute_type == "float16"
        got = _scores(reranker)
    np.testing.assert_allclose(got, _reference(hf_models["tiny"]), atol=1e-2, rtol=0)


def test_int8_float16_on_cuda_scores_close_to_transformers(converted, hf_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with Reranker(converted("tiny", "int8"), device="cuda", compute_type="int8_float16") as reranker:
        assert reranker.compute_type == "int8_float16"
        got = _scores(reranker)
    np.testing.assert_allclose(got, _reference(hf_models["tiny"]), atol=5e-2, rtol=0)


def test_replicas_on_cuda_score_like_one_replica(converted) -> None:  # type: ignore[no-untyped-def]
    # Small batches, so that the call's batches run on two CUDA streams at once.
    docs = [f"{word} apple {i}" * (1 + i % 7) for i, word in enumerate(["pie", "car", "tree", "juice"] * 12)]
    with Reranker(converted("short"), device="cuda", compute_type="float32", batch_tokens=64, replicas=1) as one:
        expected = _scores(one, docs)
    with Reranker(converted("short"), device="cuda", compute_type="float32", batch_tokens=64,
                  threads=2, replicas=2) as two:
        assert two.replicas == 2
        np.testing.assert_allclose(_scores(two, docs), expected, atol=1e-5, rtol=0)


def test_concurrent_callers_on_cuda_get_what_sequential_calls_get(converted) -> None:  # type: ignore[no-untyped-def]
    queries = [f"query {i} apple" for i in range(8)]
    with Reranker(converted("short"), device="cuda", compute_type="float32") as reranker:
        expected = [reranker.score(q, DOCS) for q in queries]
        got: list[object] = [None] * len(queries)

        def call(i: int) -> None:
            got[i] = reranker.score(queries[i], DOCS)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(queries))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=1e-6, rtol=0)


def test_close_on_cuda_waits_for_the_call_in_flight(converted) -> None:  # type: ignore[no-untyped-def]
    reranker = Reranker(converted("short"), device="cuda", compute_type="float32", batch_tokens=64)
    started, results = threading.Event(), []

    def progress(done: int, total: int) -> None:
        started.set()

    def call() -> None:
        results.append(reranker.rank(QUERY, DOCS * 20, progress=progress))

    worker = threading.Thread(target=call)
    worker.start()
    assert started.wait(60)
    reranker.close()  # returns once the call has finished with the model
    worker.join(60)
    assert len(results) == 1 and len(results[0].results) == len(DOCS) * 20
    with pytest.raises(ModelClosedError):
        reranker.score(QUERY, DOCS)


FORK_CHILD = """
import json, os, pickle, signal, sys, time, multiprocessing
from fastrerank import Reranker, FastRerankError

folder = sys.argv[1]
QUERY, DOCS = "apple fruit", ["apple pie", "car engine", "fruit salad and apple"]

def in_fork(work, normal_exit=False):
    # Fork, run work() in the child, report its outcome through a pipe; kill it past a deadline.
    # normal_exit: the child ends as a worker process does (sys.exit: atexit handlers, thread-local
    # destructors) rather than with os._exit.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            outcome = {"result": work()}
        except BaseException as err:
            outcome = {"error": type(err).__name__, "message": str(err),
                       "fastrerank": isinstance(err, FastRerankError)}
        os.write(write, json.dumps(outcome).encode())
        os.close(write)
        if normal_exit:
            sys.exit(0)
        os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            text = os.read(read, 1 << 16).decode()
            return {"exit": os.waitstatus_to_exitcode(status), **(json.loads(text) if text else {})}
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hang"

def spawned(reranker, queue):
    queue.put(reranker.score(QUERY, DOCS).tolist())

if __name__ == "__main__":
    reranker = Reranker(folder, device="cuda", compute_type="float32")
    parent = reranker.score(QUERY, DOCS).tolist()
    out = {"parent": parent}
    out["inherited"] = in_fork(lambda: reranker.score(QUERY, DOCS).tolist())
    out["inherited_normal_exit"] = in_fork(lambda: reranker.score(QUERY, DOCS).tolist(), normal_exit=True)
    out["new_in_child"] = in_fork(lambda: Reranker(folder, device="cuda", compute_type="float32").score(QUERY, DOCS).tolist())

    def auto():
        made = Reranker(folder, compute_type="float32")
        return [made.device, made.score(QUERY, DOCS).tolist()]

    out["auto_in_child"] = in_fork(auto)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=spawned, args=(reranker, queue))
    child.start()
    out["spawn"] = queue.get(timeout=120)
    child.join(60)
    reranker.close()  # frees the GPU memory: on a thread of its own, as batches run
    out["after_close"] = in_fork(lambda: "ok", normal_exit=True)
    print(json.dumps(out))
"""


def test_forked_children_of_a_cuda_parent_get_a_clear_error_and_spawned_ones_score(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "fork_child.py"
    script.write_text(FORK_CHILD)
    done = subprocess.run([sys.executable, str(script), str(converted("tiny"))], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])},
                          check=False)
    out = json_line(done)
    print(json.dumps(out, indent=1))  # what CUDA answered in the children, for the record (pytest -s)
    inherited, new, auto = out["inherited"], out["new_in_child"], out["auto_in_child"]
    assert "hang" not in (inherited, out["inherited_normal_exit"], new, auto), describe(done)
    for child in (inherited, out["inherited_normal_exit"]):  # the inherited Reranker refuses at once
        assert child["exit"] == 0 and child["error"] == "InferenceError", child
        assert "CUDA cannot be used in a process forked after its parent initialised it" in child["message"]
        assert "'spawn' or 'forkserver'" in child["message"]
    # A Reranker made in the child (device="cuda", or "auto", which finds the GPU there): CUDA
    # refuses to initialise; fastrerank says so with ModelLoadError, not "re-convert the model".
    for child in (new, auto):
        assert child["exit"] == 0 and child["error"] == "ModelLoadError", child
        assert "initialization error" in child["message"] and "use CUDA only after the fork" in child["message"]
        assert "re-convert" not in child["message"]
    np.testing.assert_allclose(out["spawn"], out["parent"], atol=1e-6, rtol=0)
    # A child forked after the parent scored and closed its model ends normally: no thread of the
    # parent that the child inherits holds a CTranslate2 CUDA stream (benchmarks/results-gpu-fork-exit.md).
    assert out["after_close"] == {"exit": 0, "result": "ok"}, out["after_close"]

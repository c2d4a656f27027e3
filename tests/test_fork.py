"""Fork-safety as hosts use it: bare ``os.fork``, multiprocessing ``fork`` and ``forkserver``, and
gunicorn ``--preload`` with uvicorn workers, after the parent loaded, scored, was loading or was
in the middle of a call, with 1, 2 or the default number of threads (one replica each), and with
one replica on 2 threads.

The int8 model is the one that hangs: loading it runs an OpenMP parallel loop (CTranslate2's
u8 compensation), and libgomp's per-thread team does not survive ``fork`` (see
``fastrerank._engine.runtime``). Every child runs under a deadline in ``fork_probe.py``, and each
probe under a timeout here, so a hang fails one test instead of stalling the suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fastrerank import Reranker

from .reliability_helpers import SRC, describe
from .serving.server_process import HOST, free_port

PROBE = Path(__file__).resolve().parent / "fork_probe.py"
QUERY, DOCS = "apple fruit", ["apple pie", "car engine", "fruit salad and apple"]
CHILDREN = ("os.fork", "multiprocessing fork", "multiprocessing forkserver")

# 2 and default run one replica per thread; 2x1 runs one replica on a 2-thread OpenMP team,
# the layout that hangs in a child when nothing is done about it.
MATRIX = [(threads, state, "object") for threads in ("1", "2", "2x1", "default")
          for state in ("loaded", "scored", "loading", "calling")]
MATRIX += [("default", state, "cache") for state in ("scored", "loading", "calling")]


@pytest.mark.slow
@pytest.mark.parametrize(("threads", "state", "via"), MATRIX)
def test_children_score_like_the_parent(threads: str, state: str, via: str, converted) -> None:  # type: ignore[no-untyped-def]
    folder = converted("tiny", "int8")
    done = subprocess.run([sys.executable, str(PROBE), str(folder), threads, state, via],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    parent = results.pop("parent")
    assert results.pop("os.fork, never calls") == "exited"
    assert results.pop("parent environment unchanged") is True
    assert results == dict.fromkeys(CHILDREN, parent), done.stderr[-3000:]
    with Reranker(folder) as fresh:  # the parent scored like a process that never forked
        assert parent == fresh.score(QUERY, DOCS).tolist()


# Endings the probe's matrix does not cover, with the float32 model: a ``spawn`` child, and bare
# ``os.fork`` children that score then close the inherited Reranker, or drop it, before a normal
# interpreter exit (docs/reliability.md, G9).
_ENDINGS_SCRIPT = """
import json, multiprocessing, os, sys, time
from fastrerank import Reranker

QUERY, DOCS = "apple fruit", ["the apple is a fruit", "Paris is a city", "data model", ""]

def in_spawned_child(folder, queue):
    queue.put(Reranker(folder, threads=1).score(QUERY, DOCS).tolist())

def wait_for(pid, what):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, (what, os.waitstatus_to_exitcode(status))
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    raise SystemExit(f"{what} hung")

if __name__ == "__main__":
    folder = sys.argv[1]
    reranker = Reranker(folder, threads=1)
    expected = reranker.score(QUERY, DOCS).tolist()  # the parent has used its encoder before forking
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=in_spawned_child, args=(folder, queue))
    child.start()
    child.join(10)
    if child.is_alive():
        child.kill()
        raise SystemExit("spawn child hung")
    assert child.exitcode == 0, ("spawn", child.exitcode)
    assert queue.get(timeout=1) == expected, "spawn"
    for case in ("score-and-close", "del"):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            if case == "score-and-close":
                os.write(write, json.dumps(reranker.score(QUERY, DOCS).tolist()).encode())
                reranker.close()
            else:
                del reranker
            os.close(write)
            sys.exit(0)
        os.close(write)
        wait_for(pid, case)
        with os.fdopen(read) as pipe:
            sent = pipe.read()
        if case == "score-and-close":
            assert json.loads(sent) == expected, case
    assert reranker.score(QUERY, DOCS).tolist() == expected  # the parent still works
    print("fork and spawn ok")
"""


def test_spawn_and_fork_children_that_close_or_drop_the_reranker(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "fork_endings.py"
    script.write_text(_ENDINGS_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(converted("tiny"))], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": SRC}, check=False)
    assert done.returncode == 0 and "fork and spawn ok" in done.stdout, describe(done)


APP = """
import os
from fastrerank import Reranker
from fastrerank.server import create_app

reranker = Reranker(os.environ["PROBE_MODEL"])  # default threads, loaded in the gunicorn master (--preload)
if os.environ.get("PROBE_SCORE_FIRST"):
    reranker.score("warm", ["up"])
app = create_app({"tiny": reranker})
"""

CONFIG = """
import json, os

def post_worker_init(worker):
    # Each worker's first call, before it serves: a hang here keeps the worker from ever booting.
    from app_module import reranker
    scores = reranker.score("apple fruit", ["apple pie", "car engine", "fruit salad and apple"]).tolist()
    with open(os.path.join(os.environ["PROBE_OUT"], f"worker-{os.getpid()}.json"), "w") as out:
        json.dump(scores, out)
"""


@pytest.mark.slow
@pytest.mark.parametrize("score_first", [False, True], ids=["loaded", "scored"])
def test_gunicorn_preload_workers_serve_the_parents_scores(score_first: bool, converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = converted("tiny", "int8")
    (tmp_path / "app_module.py").write_text(APP)
    (tmp_path / "gunicorn_conf.py").write_text(CONFIG)
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    env = {**os.environ, "PROBE_MODEL": str(folder), "PROBE_OUT": str(out), "PROBE_SCORE_FIRST": "1" if score_first else ""}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-k", "uvicorn_worker.UvicornWorker",
         "-b", f"{HOST}:{port}", "-c", str(tmp_path / "gunicorn_conf.py"), "--graceful-timeout", "5", "app_module:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("worker-*.json"))) < 2 and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.1)
        workers = {path.name: json.loads(path.read_text()) for path in out.glob("worker-*.json")}
        expected = Reranker(folder).score(QUERY, DOCS).tolist()
        assert list(workers.values()) == [expected, expected], "a worker hung or failed on its first call"
        body = {"model": "tiny", "query": QUERY, "documents": DOCS, "top_n": 3}
        for _ in range(8):
            answer = httpx.post(f"http://{HOST}:{port}/v1/rerank", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            served = {item["index"]: item["relevance_score"] for item in answer.json()["results"]}
            assert [served[i] for i in range(3)] == pytest.approx(expected, abs=1e-7)
    finally:
        server.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.communicate(timeout=30)
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, server.stdout.read() if server.stdout else ""


# CUDA refuses to work in a child forked after its parent initialised it (tests/test_cuda.py sees
# it on a GPU). The runtime's answer to that is checked here on the CPU: a runtime that believes
# it was loaded on CUDA by another process.
def test_a_cuda_encoder_inherited_through_fork_is_refused_with_what_to_do_instead(converted) -> None:  # type: ignore[no-untyped-def]
    from fastrerank import InferenceError
    from fastrerank._engine.runtime import EncoderRuntime

    runtime = EncoderRuntime(converted("tiny"), device="cpu", compute_type="default", threads=1)
    runtime._device, runtime._pid = "cuda", os.getpid() + 1  # as in a child of the process that loaded it
    with pytest.raises(InferenceError, match=r"this Reranker was loaded on CUDA by the process this one was "
                                             r"forked from, .* or start that process with multiprocessing's "
                                             r"'spawn' or 'forkserver' method"):
        with runtime.call():
            pass
    assert runtime._in_flight == 0
    runtime._device, runtime._pid = "cpu", os.getpid()  # this process's own CPU encoder again: released
    runtime.close()


@pytest.mark.parametrize(("message", "hint"), [
    ("CUDA failed with error initialization error", "; if this process was forked from one that had already used "
                                                    "CUDA, CUDA cannot work here: use CUDA only after the fork"),
    ("cuBLAS failed with status CUBLAS_STATUS_NOT_INITIALIZED", ""),
    ("CUDA failed with error out of memory", ""),
])
def test_cuda_refusing_to_load_is_not_blamed_on_the_model_files(message: str, hint: str, converted,  # type: ignore[no-untyped-def]
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    import ctranslate2

    from fastrerank import CorruptModelError, ModelLoadError
    from fastrerank._engine.runtime import EncoderRuntime

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError(message)  # the first: what CUDA says in a child forked after its parent used it

    monkeypatch.setattr(ctranslate2, "Encoder", refuse)
    with pytest.raises(ModelLoadError, match=rf"cannot load '.*' on cuda \({re.escape(message)}\){re.escape(hint)}") as raised:
        EncoderRuntime(converted("tiny"), device="cuda", compute_type="default", threads=1)
    assert not isinstance(raised.value, CorruptModelError)
    assert "re-convert" not in str(raised.value)


def test_a_cuda_runtime_never_runs_a_batch_on_the_calling_thread(converted, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # A thread that copies or frees GPU memory through CTranslate2 gets a CUDA stream whose
    # destructor aborts a child forked later (seen on an H200: exit -6 unless the parent's batches ran
    # on another thread). Checked here on the CPU: a runtime that believes it is on CUDA.
    import threading

    from fastrerank._engine import runtime as runtime_module
    from fastrerank._engine.runtime import EncoderRuntime

    real = runtime_module._first_token_states
    ran_on: list[int] = []

    def recording(*args: object) -> object:
        ran_on.append(threading.get_ident())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime_module, "_first_token_states", recording)
    runtime = EncoderRuntime(converted("tiny"), device="cpu", compute_type="default", threads=1)
    try:
        runtime.first_token_states([[0, 5, 2]])
        assert ran_on == [threading.get_ident()]  # on the CPU: one batch runs here, no thread started
        runtime._device = "cuda"
        runtime.first_token_states([[0, 5, 2]])
        assert len(ran_on) == 2 and ran_on[1] != threading.get_ident()
    finally:
        runtime._device = "cpu"
        runtime.close()


def test_a_cuda_runtime_frees_its_encoder_on_a_thread_of_its_own(converted) -> None:  # type: ignore[no-untyped-def]
    # Like a batch, freeing a CUDA model's memory gives the freeing thread a CTranslate2 CUDA
    # stream; close() on the caller's thread would leave it one. Checked on the CPU with a stand-in.
    import threading

    from fastrerank._engine.runtime import EncoderRuntime

    freed_on: list[int] = []

    class StandIn:
        def __del__(self) -> None:
            freed_on.append(threading.get_ident())

    runtime = EncoderRuntime(converted("tiny"), device="cpu", compute_type="default", threads=1)
    real, runtime._encoder = runtime._encoder, StandIn()
    runtime._device = "cuda"
    runtime.close()
    assert len(freed_on) == 1 and freed_on[0] != threading.get_ident()
    del real  # the real CPU encoder, freed here as any CPU one is

"""Run as a script: fork in every way a host does, and report what each child scored (or that it hung).

    python fork_probe.py FOLDER THREADS STATE VIA

THREADS is ``1``, ``2``, ``2x1`` (2 threads, 1 replica: an OpenMP team per batch) or ``default``; STATE says what the parent did before forking:
``loaded`` (built a Reranker), ``scored`` (and called it), ``loading`` (another thread was
building one), ``calling`` (another thread was in the middle of a call); VIA is ``object`` (a
Reranker instance) or ``cache`` (``fastrerank.rank``'s process-wide cache). Every child gets a
deadline; one that misses it is killed and reported as ``"hang"``. The last line printed is a
JSON object: child name -> scores, ``"hang"``, or an error string; plus ``"parent"``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import multiprocessing
import os
import signal
import sys
import threading
import time

import ctranslate2

import fastrerank
from fastrerank import Reranker

DEADLINE_S = 30.0
QUERY, DOCS = "apple fruit", ["apple pie", "car engine", "fruit salad and apple"]


def main() -> None:
    folder, threads_arg, state, via = sys.argv[1:5]
    if threads_arg == "default":
        options = {}
    elif "x" in threads_arg:  # THREADSxREPLICAS, e.g. 2x1: one replica running each batch on 2 threads
        threads, replicas = threads_arg.split("x")
        options = {"threads": int(threads), "replicas": int(replicas)}
    else:
        options = {"threads": int(threads_arg)}
    env_before = dict(os.environ)

    def make() -> Reranker:
        return Reranker(folder, **options)  # type: ignore[arg-type]

    def score_with(reranker: Reranker | None) -> list[float]:
        if via == "cache":
            ranking = fastrerank.rank(QUERY, DOCS, model=folder)
            return [item.score for item in sorted(ranking, key=lambda item: item.index)]
        assert reranker is not None
        return reranker.score(QUERY, DOCS).tolist()

    reranker: Reranker | None = None
    background: threading.Thread | None = None
    if state == "loading":
        # Fork while another thread is inside the model load: the loader signals as it enters
        # CTranslate2's constructor, and the fork follows at once.
        entered = threading.Event()
        real_encoder = ctranslate2.Encoder

        def signalling_encoder(*args: object, **kwargs: object) -> object:
            entered.set()
            return real_encoder(*args, **kwargs)

        ctranslate2.Encoder = signalling_encoder  # type: ignore[misc]
        background = threading.Thread(target=lambda: score_with(make() if via == "object" else None))
        background.start()
        if not entered.wait(DEADLINE_S):
            raise SystemExit("the background load never started")
    else:
        reranker = None if via == "cache" else make()
        if state in ("scored", "calling"):
            score_with(reranker)
        if state == "calling":
            # Fork while another thread is in the middle of a call of many batches.
            many = [f"{doc} {i}" for i in range(400) for doc in DOCS]  # distinct: identical windows run once
            started = threading.Event()

            def call_many() -> None:
                started.set()
                for _ in range(3):
                    if via == "cache":
                        fastrerank.rank(QUERY, many, model=folder)
                    else:
                        reranker.score(QUERY, many)  # type: ignore[union-attr]

            background = threading.Thread(target=call_many)
            background.start()
            started.wait()
            time.sleep(0.05)

    def child_reranker() -> Reranker | None:
        # A child of a parent that was still loading has no Reranker of its own yet.
        return make() if (via == "object" and reranker is None) else reranker

    results: dict[str, object] = {}
    results["os.fork"] = _bare_fork(lambda: score_with(child_reranker()))
    results["os.fork, never calls"] = _bare_fork(None)
    for method in ("fork", "forkserver"):
        results[f"multiprocessing {method}"] = _multiprocessing_child(method, child_reranker(), via, folder)
    if background is not None:
        background.join()
    results["parent"] = score_with(reranker if reranker is not None else make())
    results["parent environment unchanged"] = dict(os.environ) == env_before
    print(json.dumps(results))


def _bare_fork(work: object) -> object:
    """A child made by ``os.fork``: it scores (``work``) or not, then exits the normal way."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        faulthandler.dump_traceback_later(DEADLINE_S - 5, exit=True)  # a hang says where, on stderr
        try:
            payload: object = work() if callable(work) else "exited"
            if "CT2_FORCE_CPU_ISA" in os.environ and "CT2_FORCE_CPU_ISA" not in ENV_AT_START:
                payload = "CT2_FORCE_CPU_ISA leaked into the child's environment"
        except BaseException as err:  # reported to the parent, which fails the test
            payload = f"{type(err).__name__}: {err}"
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(payload))
        sys.exit(0)  # normal interpreter exit: destructors and atexit run, as in a gunicorn worker
    os.close(write)
    status = _wait(pid)
    with os.fdopen(read) as reader:
        text = reader.read()
    if status is None:
        return "hang"
    if status != 0:
        return f"exit status {status}: {text}"
    return json.loads(text)


def _wait(pid: int) -> int | None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    threads = []
    for task in sorted(os.listdir(f"/proc/{pid}/task")):  # where each thread of the hung child waits
        with contextlib.suppress(OSError):
            name = open(f"/proc/{pid}/task/{task}/comm").read().strip()
            wchan = open(f"/proc/{pid}/task/{task}/wchan").read().strip()
            threads.append(f"{task} {name} {wchan}")
    print(f"hung child {pid}: " + "; ".join(threads), file=sys.stderr)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _child_scores(reranker: Reranker | None, via: str, folder: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        if via == "cache":
            ranking = fastrerank.rank(QUERY, DOCS, model=folder)
            queue.put([item.score for item in sorted(ranking, key=lambda item: item.index)])
        else:
            assert reranker is not None
            queue.put(reranker.score(QUERY, DOCS).tolist())  # pickled by model and options for forkserver
    except BaseException as err:
        queue.put(f"{type(err).__name__}: {err}")


def _multiprocessing_child(method: str, reranker: Reranker | None, via: str, folder: str) -> object:
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    process = context.Process(target=_child_scores, args=(reranker, via, folder, queue))
    try:
        process.start()  # forkserver pickles the Reranker here
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    try:
        result = queue.get(timeout=DEADLINE_S)
    except Exception:
        result = "hang"
    process.join(DEADLINE_S)
    if process.is_alive():
        process.kill()
        process.join()
        return "hang"
    if process.exitcode != 0:
        return f"exit status {process.exitcode}: {result}"
    return result


ENV_AT_START = dict(os.environ)

if __name__ == "__main__":
    main()

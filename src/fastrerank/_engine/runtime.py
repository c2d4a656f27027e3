"""The CTranslate2 encoder: rows of token ids in, first-token hidden states out.

Seven traps of CTranslate2 are handled here, once:

* An empty batch or a zero-length row kills the process with SIGFPE; such input is refused
  before it reaches CTranslate2.
* An encoder inherited through ``fork`` hangs forever in the child, and destroying it there
  aborts the process. The process id is recorded at load; in a process that did not load it the
  encoder is rebuilt lazily and the inherited one is kept aside, never used or freed. A CUDA
  encoder cannot be rebuilt there: CUDA refuses to work in a child forked after the parent
  initialised it, so such a call raises at once and says what to do instead.
* The wheel's GNU libgomp keeps an OpenMP thread team per calling thread and has no fork
  handler, and loading a model runs an OpenMP parallel loop. A thread that loaded a model with
  2+ threads hangs in its next parallel loop in a forked child, waiting for team threads that
  were not copied. Every encoder is therefore built on a short-lived helper thread, whose team
  dies with it: no thread of the host (in the parent or in a child) ever holds one.
* A fork while another thread is inside CTranslate2 (loading, running a batch, releasing a
  model) copies whatever lock that thread holds; such work runs in a native section, and a fork
  waits for the sections in progress to end (:mod:`fastrerank._engine.fork_gate`).
* CTranslate2 allocates its buffers for every batch and frees them after it, and glibc's malloc may
  hand them back to the kernel in between, so that every batch faults them in again: the first
  CPU load moves glibc's dynamic thresholds to their ceiling (:mod:`fastrerank._engine.malloc_thresholds`).
* On CUDA, every thread that copies or frees GPU memory through CTranslate2 gets a CUDA stream
  of its own, whose destructor aborts a process forked after the thread got it (CUDA is gone in
  the child, and the destructor throws). So on CUDA no batch and no release runs on the caller's
  thread: they run on threads that end with them (benchmarks/results-gpu-fork-exit.md).
* ``unload_model()`` silently does nothing while batches are active, so ``close()`` keeps its
  own state: it refuses new calls, waits for the calls in flight (whole calls, not batches), then
  releases the model.

The encoder is built as ``replicas`` replicas sharing one copy of the weights (CTranslate2's
``inter_threads``): on the CPU each runs its batches on ``threads // replicas`` threads
(``intra_threads``), on CUDA on a CUDA stream of its own; a call keeps every replica busy
(:mod:`fastrerank._engine.dispatch`).
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import numpy as np

from .._ctranslate2 import import_ctranslate2
from ..errors import CorruptModelError, InferenceError, ModelClosedError, ModelLoadError
from .cpu_isa import cpu_isa_for_load
from .dispatch import join_all, run_batches
from .fork_gate import native_section
from .malloc_thresholds import raise_dynamic_thresholds
from .pair_template import PairTemplate

T = TypeVar("T")
Rows = Sequence[Sequence[int] | np.ndarray]
# Runs a call's batches and hands each one's first-token states to a callback: see EncoderRuntime.call.
BatchRunner = Callable[[Sequence[Rows], Callable[[int, np.ndarray], None]], None]

__all__ = ["EncoderRuntime"]

# Any ids the vocabulary holds (0-2 exist in every model's): the warm-up batch's result is unused,
# and padding is masked out by the lengths whatever its id.
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2


def _park_inherited(encoder: object) -> None:
    """Never free an encoder inherited through fork.

    Its destructor joins threads that only exist in the parent, which aborts the child
    (``std::system_error``), even at interpreter exit. A reference that nothing releases keeps
    it alive until the process ends.
    """
    if encoder is not None:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(encoder))


# CUDA refuses to work in a child forked after its parent initialised CUDA; what to do instead.
_CUDA_ONLY_AFTER_FORK = ("use CUDA only after the fork, in the process that scores (gunicorn: no --preload, or load "
                         "in a post_fork hook; nothing on CUDA, device='auto' included, before the fork), or start "
                         "that process with multiprocessing's 'spawn' or 'forkserver' method")
_CUDA_AFTER_FORK = ("this Reranker was loaded on CUDA by the process this one was forked from, and CUDA cannot be "
                    "used in a process forked after its parent initialised it: " + _CUDA_ONLY_AFTER_FORK)


# How CUDA, cuBLAS and cuDNN failures read in CTranslate2's messages (a load that fails on them is
# not a damaged model).
_GPU_FAILURE = re.compile(r"cuda|cublas|cudnn|out of memory", re.IGNORECASE)


def _hint(err: Exception) -> str:
    """What to do about a failure that comes from the machine rather than the input, or ``""``."""
    if "libcublas" in str(err):
        # CTranslate2 4.x wheels load CUDA 12's cuBLAS only at the first batch, so loading succeeds.
        return ("; CTranslate2's CUDA build needs CUDA 12's cuBLAS (a CUDA 12 toolkit, or "
                "`pip install nvidia-cublas-cu12` with its lib folder on LD_LIBRARY_PATH)")
    if "initialization error" in str(err):
        # cudaErrorInitializationError: what CUDA answers in a child forked after its parent
        # initialised CUDA (a Reranker(device="auto") or a CUDA model loaded before the fork).
        return ("; if this process was forked from one that had already used CUDA, CUDA cannot work here: "
                + _CUDA_ONLY_AFTER_FORK)
    return ""


def _on_helper_thread(function: Callable[[], T]) -> T:
    """Run ``function`` on a new thread that ends when it returns; re-raise what it raised there."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(function())
        except BaseException as err:  # handed to the calling thread below
            errors.append(err)

    helper = threading.Thread(target=run, name="fastrerank-load", daemon=True)
    with native_section():  # no fork until the helper, its OpenMP team included, is gone
        try:
            helper.start()
        finally:
            try:
                # Through a Ctrl-C too (even one out of start()): leaving the section while the
                # load goes on would let a fork copy the locks it holds.
                join_all([helper])
            except BaseException:
                results.clear()  # an interrupted load's encoder is freed here, still in the section
                raise
            finally:
                _wait_until_gone(helper.native_id)
    if errors:
        raise errors[0]
    return results[0]


def _wait_until_gone(native_id: int | None, limit_s: float = 5.0) -> None:
    """Wait until a joined thread has really ended (Linux): ``join()`` returns before the thread's
    C-level exit handlers (libgomp's and MKL's per-thread cleanup) have run, and a fork meanwhile
    would copy a lock one of them holds."""
    if native_id is None:
        return
    task = f"/proc/self/task/{native_id}"
    deadline = time.monotonic() + limit_s
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.0005)


def _on_threads(count: int, function: Callable[[], object]) -> None:
    """Call ``function`` on ``count`` new threads at once and wait until they have ended."""
    threads = [threading.Thread(target=function, name="fastrerank-warm-up", daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
        _wait_until_gone(thread.native_id)


def _thread_ids() -> set[int]:
    """The ids of this process's threads (Linux; empty elsewhere)."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _wait_until_asleep(thread_ids: set[int], limit_s: float = 0.5) -> None:
    """Wait (bounded) until none of ``thread_ids`` is running; the ones gone since count as asleep.

    Bounded short: OpenMP threads told to spin (``OMP_WAIT_POLICY=ACTIVE``) never sleep, and hold
    no lock while they spin.
    """
    deadline = time.monotonic() + limit_s
    for thread_id in thread_ids:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/self/task/{thread_id}/stat") as stat:
                    state = stat.read().rpartition(")")[2].split()[0]  # the name, in brackets, may hold spaces
            except (OSError, IndexError):
                break
            if state != "R":
                break
            time.sleep(0.0005)


_RUNTIMES: weakref.WeakSet[EncoderRuntime] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Right after fork, before anything can drop the last reference to an inherited encoder
    # (del, garbage collection, interpreter exit). Locks and counts of the parent's threads mean
    # nothing here: those threads do not exist in the child.
    for runtime in list(_RUNTIMES):
        _park_inherited(runtime._encoder)
        runtime._lock = threading.Lock()
        runtime._idle = threading.Condition(runtime._lock)
        runtime._in_flight = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class EncoderRuntime:
    """One loaded ``ctranslate2.Encoder``; safe to call from many threads."""

    def __init__(self, folder: Path, *, device: str, compute_type: str, threads: int, replicas: int = 1,
                 pair_template: PairTemplate | None = None) -> None:
        # Only a template with token types (BERT's) is kept: it says where they change in a row.
        # XLM-R rows go to CTranslate2 exactly as before, without token types (all 0).
        self._token_types = pair_template if pair_template is not None and pair_template.uses_token_types else None
        self._folder = folder
        self._device = device
        self._compute_type = compute_type
        self._threads = threads
        self._replicas = replicas
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._closed = False
        self._calls_here = threading.local()  # .depth: the calls in progress on each thread
        self._release_when_idle = False  # close() came from inside a call: the last call to end releases
        self._encoder = self._load()
        self._resolved_compute_type = str(self._encoder.compute_type)  # kept: the encoder goes at close()
        self._pid = os.getpid()
        _RUNTIMES.add(self)

    @property
    def compute_type(self) -> str:
        """The compute type CTranslate2 resolved (``default`` becomes the model's own)."""
        return self._resolved_compute_type

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _load(self):  # type: ignore[no-untyped-def]
        ctranslate2 = import_ctranslate2()

        if self._device == "cpu":
            raise_dynamic_thresholds()  # per-batch buffers stay mapped between batches

        def build():  # type: ignore[no-untyped-def]
            with cpu_isa_for_load() if self._device == "cpu" else nullcontext():
                encoder = ctranslate2.Encoder(
                    str(self._folder),
                    device=self._device,
                    compute_type=self._compute_type,
                    intra_threads=max(1, self._threads // self._replicas),
                    inter_threads=self._replicas,
                )
            if self._device == "cpu":
                # The constructor returns while CTranslate2's worker threads may still be setting
                # themselves up (OpenMP and MKL thread settings); a fork then would copy whatever
                # lock one of them holds. Every replica gets a two-token batch, and the load ends
                # once every thread CTranslate2 started is asleep, waiting for work.
                _on_threads(self._replicas, lambda: encoder.forward_batch([[BOS_ID, EOS_ID]]))
                _wait_until_asleep(_thread_ids() - before - {threading.get_native_id()})
            return encoder

        before = _thread_ids()
        try:
            return _on_helper_thread(build)
        except (RuntimeError, ValueError, OSError) as err:
            # The GPU refused, not the files; read without the folder, which CTranslate2's messages
            # quote ("Unable to open file 'model.bin' in model '<folder>'") and may say "cuda".
            if self._device != "cpu" and _GPU_FAILURE.search(str(err).replace(str(self._folder), "")):
                raise ModelLoadError(f"CTranslate2 cannot load {str(self._folder)!r} on {self._device} "
                                     f"({err}){_hint(err)}") from err
            raise CorruptModelError(
                f"CTranslate2 cannot load {str(self._folder)!r} ({err}); re-convert with force=True"
            ) from err

    @property
    def replicas(self) -> int:
        """How many batches run at once (CTranslate2's ``inter_threads``)."""
        return self._replicas

    @contextmanager
    def call(self) -> Iterator[BatchRunner]:
        """Enter one call (any number of batches): yields ``run(batches, on_result)``.

        ``run`` runs the batches, up to :attr:`replicas` at a time, and calls
        ``on_result(index, states)`` on the calling thread for each (in completion order), where
        ``states`` are the batch's first-token states (:func:`_first_token_states`).
        Raises :class:`ModelClosedError` when :meth:`close` was called before the call started;
        ``close()`` waits until every call that started before it has left this block.
        """
        with self._lock:
            if self._closed:
                raise ModelClosedError("Reranker was closed")
            if self._pid != os.getpid():
                # Inherited through fork: the parent's encoder would hang here. Build our own.
                if self._device != "cpu":
                    raise InferenceError(_CUDA_AFTER_FORK)
                _park_inherited(self._encoder)
                self._encoder = self._load()
                self._pid = os.getpid()
            self._in_flight += 1
            held = [self._encoder]  # emptied as the call ends: a caller's reference to run keeps no model alive
            entered_in = self._pid
        self._calls_here.depth = getattr(self._calls_here, "depth", 0) + 1
        template = self._token_types
        replicas = self._replicas
        # CTranslate2 gives every thread that copies or frees GPU memory a CUDA stream of its own,
        # destroyed with the thread, and that destructor aborts a process forked meanwhile (CUDA
        # is gone there). The caller's thread may be one that forks later (a gunicorn master), or
        # the main thread of such a child, which ends only with the process: so on CUDA every batch
        # runs on a thread that ends with the call.
        off_caller = self._device != "cpu"

        def run(batches: Sequence[Rows], on_result: Callable[[int, np.ndarray], None]) -> None:
            # Looked up on each batch, so that tests can stand in for the model.
            run_batches(lambda rows: _first_token_states(held[0], rows, template), batches, replicas, on_result,
                        off_caller=off_caller)

        try:
            yield run
        finally:
            self._calls_here.depth -= 1
            held.clear()
            # A call that a fork (from its progress callback) carried into a child was never counted
            # there: the child's counts started afresh at the fork.
            if entered_in == os.getpid():
                with self._lock:
                    self._in_flight -= 1
                    release = self._in_flight == 0 and self._release_when_idle
                    if self._in_flight == 0:
                        self._idle.notify_all()
                if release:
                    self._release()

    def first_token_states(self, rows: Rows) -> np.ndarray:
        """Run one batch as a call of its own; see :meth:`call` and :func:`_first_token_states`."""
        states: list[np.ndarray] = []
        with self.call() as run:
            run([rows], lambda _index, result: states.append(result))
        return states[0]

    def close(self) -> None:
        """Refuse new calls, wait for the calls in flight, then release the model. Idempotent.

        Called from inside a call on the same thread (a progress callback), it returns at once and
        the last call in flight releases the model as it ends.
        """
        with self._lock:
            self._closed = True
            if getattr(self._calls_here, "depth", 0):
                # From inside a call of this thread (a progress callback): waiting here would wait
                # for that call, forever. The last call in flight releases the model as it ends.
                self._release_when_idle = True
                return
        self._release()

    def _release(self) -> None:
        with self._lock:
            while self._in_flight:
                self._idle.wait()
            self._release_when_idle = False
            encoder, self._encoder = self._encoder, None
            if self._pid != os.getpid():
                _park_inherited(encoder)
        if self._device != "cpu":
            # Freeing GPU memory gives the freeing thread a CTranslate2 CUDA stream (see call()):
            # the last reference goes on a thread that ends here, not on the caller's.
            last = [encoder]
            del encoder
            _on_helper_thread(last.clear)  # in a native section of its own
            return
        with native_section():  # the destructor joins CTranslate2's threads and frees the model
            del encoder


def _first_token_states(encoder, rows: Rows, template: PairTemplate | None = None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Run one batch and return the first token's last hidden state of each row, ``[rows, hidden]`` float32.

    With a ``template`` (one that uses token types: BERT's), they are passed for every row; otherwise none.
    """
    if not rows or min(len(row) for row in rows) == 0:
        # CTranslate2 would end the process with SIGFPE on this input.
        raise InferenceError("refusing to run an empty batch or an empty row")
    ctranslate2 = import_ctranslate2()

    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), PAD_ID, dtype=np.int32)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
    inputs = (ctranslate2.StorageView.from_array(ids), ctranslate2.StorageView.from_array(lengths))
    # CTranslate2 takes token types as nested lists of the padded batch's shape (BERT only).
    token_types = {} if template is None else {"token_type_ids": template.token_types(ids).tolist()}
    with native_section():
        try:
            output = encoder.forward_batch(*inputs, **token_types)
        except (RuntimeError, ValueError) as err:
            raise InferenceError(f"CTranslate2 failed on a batch of {len(rows)} rows: {err}{_hint(err)}") from err
        states = output.last_hidden_state
        if states.dtype not in (ctranslate2.DataType.float32, ctranslate2.DataType.float16):
            states = states.to(ctranslate2.DataType.float32)  # bfloat16: numpy has no such type
        if states.device != "cpu":
            # float16 states cross to the host as they are: half the bytes of float32.
            states = states.to_device(ctranslate2.Device.cpu)
        # Copy only the first token's row out of the [rows, width, hidden] output, in float32.
        # astype must copy (its default): the output's memory is freed on the next line.
        first = np.asarray(states)[:, 0, :].astype(np.float32)
        del output, states  # CTranslate2 frees its output here, inside the section
    return first

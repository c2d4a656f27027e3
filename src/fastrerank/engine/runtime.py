"""The CTranslate2 encoder: rows of token ids in, first-token hidden states out.

Three traps of CTranslate2 are handled here, once:

* An empty batch or a zero-length row kills the process with SIGFPE; such input is refused
  before it reaches CTranslate2.
* An encoder inherited through ``fork`` hangs forever in the child, and destroying it there
  aborts the process. The process id is recorded at load; in a process that did not load it the
  encoder is rebuilt lazily and the inherited one is kept aside, never used or freed.
* ``unload_model()`` silently does nothing while batches are active, so ``close()`` keeps its
  own state: it refuses new calls, waits for the calls in flight, then releases the model.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import CorruptModelError, InferenceError, ModelClosedError

__all__ = ["EncoderRuntime"]

PAD_ID = 1


def _park_inherited(encoder: object) -> None:
    """Never free an encoder inherited through fork.

    Its destructor joins threads that only exist in the parent, which aborts the child
    (``std::system_error``), even at interpreter exit. A reference that nothing releases keeps
    it alive until the process ends.
    """
    if encoder is not None:
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(encoder))


def _hint(err: Exception) -> str:
    """What to do about a failure that comes from the machine rather than the input, or ``""``."""
    if "libcublas" in str(err):
        # CTranslate2 4.x wheels load CUDA 12's cuBLAS only at the first batch, so loading succeeds.
        return ("; CTranslate2's CUDA build needs CUDA 12's cuBLAS (a CUDA 12 toolkit, or "
                "`pip install nvidia-cublas-cu12` with its lib folder on LD_LIBRARY_PATH)")
    return ""


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

    def __init__(self, folder: Path, *, device: str, compute_type: str, threads: int) -> None:
        self._folder = folder
        self._device = device
        self._compute_type = compute_type
        self._threads = threads
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._closed = False
        self._encoder = self._load()
        self._pid = os.getpid()
        _RUNTIMES.add(self)

    @property
    def compute_type(self) -> str:
        """The compute type CTranslate2 resolved (``default`` becomes the model's own)."""
        return str(self._encoder.compute_type)

    def _load(self):  # type: ignore[no-untyped-def]
        import ctranslate2

        try:
            return ctranslate2.Encoder(
                str(self._folder),
                device=self._device,
                compute_type=self._compute_type,
                intra_threads=self._threads,
                inter_threads=1,
            )
        except (RuntimeError, ValueError, OSError) as err:
            raise CorruptModelError(
                f"CTranslate2 cannot load {str(self._folder)!r} ({err}); re-convert with force=True"
            ) from err

    @contextmanager
    def _call(self) -> Iterator[object]:
        with self._lock:
            if self._closed:
                raise ModelClosedError("Reranker was closed")
            if self._pid != os.getpid():
                # Inherited through fork: the parent's encoder would hang here. Build our own.
                _park_inherited(self._encoder)
                self._encoder = self._load()
                self._pid = os.getpid()
            self._in_flight += 1
            encoder = self._encoder
        try:
            yield encoder
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()

    def check_open(self) -> None:
        """Raise :class:`ModelClosedError` once :meth:`close` was called."""
        if self._closed:
            raise ModelClosedError("Reranker was closed")

    def first_token_states(self, rows: Sequence[Sequence[int] | np.ndarray]) -> np.ndarray:
        """Run one batch and return the first token's last hidden state of each row, ``[rows, hidden]`` float32."""
        if not rows or min(len(row) for row in rows) == 0:
            # CTranslate2 would end the process with SIGFPE on this input.
            raise InferenceError("refusing to run an empty batch or an empty row")
        import ctranslate2

        width = max(len(row) for row in rows)
        ids = np.full((len(rows), width), PAD_ID, dtype=np.int32)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
        with self._call() as encoder:
            try:
                output = encoder.forward_batch(  # type: ignore[attr-defined]
                    ctranslate2.StorageView.from_array(ids), ctranslate2.StorageView.from_array(lengths)
                )
            except (RuntimeError, ValueError) as err:
                raise InferenceError(f"CTranslate2 failed on a batch of {len(rows)} rows: {err}{_hint(err)}") from err
            states = output.last_hidden_state
            if states.dtype != ctranslate2.DataType.float32:
                states = states.to(ctranslate2.DataType.float32)
            if states.device != "cpu":
                states = states.to_device(ctranslate2.Device.cpu)
            # Copy only the first token's row out of the [rows, width, hidden] output.
            return np.asarray(states)[:, 0, :].copy()

    def close(self) -> None:
        """Refuse new calls, wait for the calls in flight, then release the model. Idempotent."""
        with self._lock:
            self._closed = True
            while self._in_flight:
                self._idle.wait()
            encoder, self._encoder = self._encoder, None
            if self._pid != os.getpid():
                _park_inherited(encoder)
        del encoder

"""Opt-in tuning of a process that is yours: glibc's malloc and CTranslate2's CPU kernels.

fastrerank changes nothing in the process it is imported into. :func:`tune_process` is for
programs that own their process (a batch job, a dedicated worker, the ``fastrerank`` command
line, which calls it at start) and want what may help CTranslate2 on some machines:

* glibc's malloc switches (:data:`GLIBC_MALLOPT`), set with ``mallopt(3)``: one arena, a 32 MiB
  mmap threshold, no trimming below 1 GiB, heap growth in 256 MiB steps. CTranslate2 allocates
  and frees its activation buffers on every batch; where glibc maps and unmaps them each time,
  page faults cost a large share of the time. How much this helps depends on the machine and
  the batch size (``benchmarks/RESULTS.md``); the price is that every thread of the process
  shares one arena and freed memory is kept instead of returned to the system.
* ``CT2_FORCE_CPU_ISA=AVX512`` in ``os.environ`` on a CPU with AVX-512, unless already set
  (a :class:`~fastrerank.Reranker` sets it only while the first model loads; this keeps it).

For a launcher, ``fastrerank env`` prints the same switches as environment variables (plus
glibc's transparent huge pages tunable, which only the environment can set)::

    $ eval "$(fastrerank env)"
    $ exec python my_service.py
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from ._engine.cpu_isa import ISA_VARIABLE, cpu_flags, preferred_cpu_isa
from ._engine.malloc_thresholds import on_glibc

__all__ = ["GLIBC_ENV", "GLIBC_MALLOPT", "ProcessTuning", "recommended_environment", "tune_process"]

logger = logging.getLogger(__name__)

GLIBC_ENV: Mapping[str, str] = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "1073741824",
    "MALLOC_TOP_PAD_": "268435456",
}
GLIBC_TUNABLES = "glibc.malloc.hugetlb=1"  # madvise(MADV_HUGEPAGE) on what malloc maps: 2 MiB faults

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
# The same switches as GLIBC_ENV, as mallopt(3) parameters.
GLIBC_MALLOPT: Mapping[int, int] = {
    _M_ARENA_MAX: 1,
    _M_MMAP_THRESHOLD: 32 << 20,
    _M_TRIM_THRESHOLD: 1 << 30,
    _M_TOP_PAD: 256 << 20,
}
_lock = threading.Lock()


@dataclass(frozen=True)
class ProcessTuning:
    """What :func:`tune_process` changed: ``malloc`` (glibc's switches applied) and ``cpu_isa``
    (the value it put in ``CT2_FORCE_CPU_ISA``, or ``None``)."""

    malloc: bool
    cpu_isa: str | None


def _glibc_malloc_available(environ: Mapping[str, str]) -> bool:
    # With another allocator preloaded, glibc's switches would not reach it.
    return not environ.get("LD_PRELOAD") and on_glibc()


def tune_process() -> ProcessTuning:
    """Tune this process for CTranslate2 on the CPU; call it first thing, before loading a model.

    Only for a process that is yours: it changes malloc for every thread and may set
    ``CT2_FORCE_CPU_ISA`` for good (see the module docstring). Calling it again changes nothing
    more. Returns what it changed.

    Example:
        >>> import fastrerank
        >>> fastrerank.tune_process()  # doctest: +SKIP
        ProcessTuning(malloc=True, cpu_isa='AVX512')
    """
    with _lock:
        malloc = False
        if _glibc_malloc_available(os.environ):
            import ctypes
            import ctypes.util

            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                malloc = all(libc.mallopt(param, value) == 1 for param, value in GLIBC_MALLOPT.items())
            except (OSError, AttributeError):
                malloc = False
        isa = preferred_cpu_isa(os.environ, cpu_flags())
        if isa is not None:
            os.environ[ISA_VARIABLE] = isa
        logger.info("tuned the process for CTranslate2 (malloc: %s, %s: %s)", malloc, ISA_VARIABLE, isa)
        return ProcessTuning(malloc=malloc, cpu_isa=isa)


def recommended_environment(environ: Mapping[str, str] | None = None, *, flags: frozenset[str] | None = None) -> dict[str, str]:
    """The environment variables that set :func:`tune_process`'s switches before a process starts.

    The user's own values win: a variable already in ``environ`` is left out.
    """
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in GLIBC_ENV.items() if name not in environ}
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        env["GLIBC_TUNABLES"] = f"{tunables}:{GLIBC_TUNABLES}" if tunables else GLIBC_TUNABLES
    isa = preferred_cpu_isa(environ, cpu_flags() if flags is None else flags)
    if isa is not None:
        env[ISA_VARIABLE] = isa
    return env

"""Which CPU instruction set CTranslate2 may use, chosen without leaving a trace in the host process.

CTranslate2 picks its kernels once per process, from ``CT2_FORCE_CPU_ISA`` when it loads its first
model, and never picks AVX-512 by itself on AMD CPUs that have it. Its AVX-512 kernels are faster
there (``benchmarks/RESULTS.md``), so :func:`preferred_cpu_isa` sets the variable for the duration
of a model load and puts the environment back as it was right after (:func:`cpu_isa_for_load`).
The user's own ``CT2_FORCE_CPU_ISA`` always wins, and a process that already loaded a CTranslate2
model keeps the ISA it selected then.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from .._scoped_env import ScopedVariable

__all__ = ["AVX512_FLAGS", "ISA_VARIABLE", "cpu_flags", "cpu_isa_for_load", "preferred_cpu_isa"]

ISA_VARIABLE = "CT2_FORCE_CPU_ISA"
# CTranslate2's AVX-512 kernels need all of these (AVX-512F alone is not enough).
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})

_scope_lock = threading.Lock()
_chosen = False  # CTranslate2 has loaded a model in this process: its ISA is fixed from now on
_isa = ScopedVariable(ISA_VARIABLE)


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags Linux reports (empty when unknown)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def preferred_cpu_isa(environ: Mapping[str, str], flags: frozenset[str]) -> str | None:
    """The ISA to ask CTranslate2 for, or ``None`` to leave its own choice (or the user's) alone."""
    if ISA_VARIABLE in environ or not AVX512_FLAGS <= flags:
        return None
    return "AVX512"


@contextmanager
def cpu_isa_for_load(environ: MutableMapping[str, str] | None = None, *, flags: frozenset[str] | None = None) -> Iterator[None]:
    """Set ``CT2_FORCE_CPU_ISA`` while a CPU model loads, then restore the environment exactly.

    Only the first load of the process needs it (CTranslate2 reads the variable once); later
    loads change nothing. The first loads are serialised by a lock so that two threads never
    interleave their set and restore. A child forked during the window gets the variable removed
    again (see the fork handler below).
    """
    global _chosen
    if _chosen:
        yield
        return
    environ = os.environ if environ is None else environ
    with _scope_lock:
        isa = None if _chosen else preferred_cpu_isa(environ, cpu_flags() if flags is None else flags)
        with _isa.set_to(isa, environ):
            yield
            _chosen = True


def _after_fork_in_child() -> None:
    global _scope_lock
    _scope_lock = threading.Lock()  # the loading thread does not exist in the child (ScopedVariable removes its variable)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

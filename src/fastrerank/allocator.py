"""Run the command line under a memory allocator that keeps CTranslate2's buffers.

CTranslate2 allocates and frees its large activation buffers on every batch. With glibc's
default malloc, every buffer above the mmap threshold is a fresh ``mmap``, so each batch pays a
page fault per 4 KiB page: on a 2-core Zen 4 the int8 base model spent about 40% of its time
in the kernel, and a caching allocator made it 1.7-1.9x faster (``benchmarks/RESULTS.md``).
Two fixes need no change to CTranslate2:

* glibc's own switches, as environment variables (:data:`GLIBC_ENV`): one arena, the largest
  mmap threshold, no trimming, and transparent huge pages for what is still mapped. Measured
  as fast as mimalloc or a little faster, and needs no package: the default;
* ``mimalloc`` (the ``cmeel-mimalloc`` wheel: ``pip install cmeel-mimalloc``) preloaded with
  ``LD_PRELOAD``: it keeps freed memory for the next batch.

Both must be in place before the process starts, so the command line re-executes itself once:
:func:`reexec_with_fast_allocator` is called at the very start of ``fastrerank``'s ``main()``.
``FASTRERANK_ALLOCATOR`` chooses: ``auto`` (default: glibc's switches on glibc systems),
``glibc``, ``mimalloc`` (falls back to glibc's switches when not installed) or ``system``
(leave the process alone).

A program that embeds the library gets glibc's switches at run time: :class:`fastrerank.Reranker`
calls :func:`tune_malloc` when it loads a model on the CPU (``mallopt``, measured as fast as the
environment variables; ``FASTRERANK_ALLOCATOR=system`` opts out). For mimalloc, or to set the
switches before anything else runs, set the environment in the launcher, for example::

    $ eval "$(python -m fastrerank.allocator)"   # prints the export lines for this machine
    $ python my_service.py
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CHOICES", "ENV_CHOICE", "ENV_MARKER", "GLIBC_ENV", "GLIBC_MALLOPT", "AllocatorPlan", "cpu_flags",
           "find_mimalloc", "plan_allocator", "reexec_with_fast_allocator", "should_tune_malloc", "tune_cpu_isa",
           "tune_malloc"]

logger = logging.getLogger(__name__)

ENV_CHOICE = "FASTRERANK_ALLOCATOR"
ENV_MARKER = "_FASTRERANK_ALLOCATOR_SET"  # set in the re-executed process: never re-execute twice
CHOICES = ("auto", "mimalloc", "glibc", "system")
MIMALLOC_DISTRIBUTION = "cmeel-mimalloc"

GLIBC_ENV: Mapping[str, str] = {
    "MALLOC_ARENA_MAX": "1",  # CTranslate2's worker thread would otherwise get a 64 MiB-capped arena
    "MALLOC_MMAP_THRESHOLD_": "33554432",  # 32 MiB, glibc's maximum: smaller buffers are reused, not mapped
    "MALLOC_TRIM_THRESHOLD_": "1073741824",  # keep up to 1 GiB of freed heap instead of returning it
    "MALLOC_TOP_PAD_": "268435456",  # grow the heap in 256 MiB steps
}
GLIBC_TUNABLES = "glibc.malloc.hugetlb=1"  # madvise(MADV_HUGEPAGE) on what malloc maps: 2 MiB faults


@dataclass(frozen=True)
class AllocatorPlan:
    """What to run under: the allocator's name and the environment variables that select it."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)


def find_mimalloc() -> Path | None:
    """The ``libmimalloc.so`` shipped by the ``cmeel-mimalloc`` wheel, or ``None`` when it is not installed."""
    try:
        files = importlib.metadata.files(MIMALLOC_DISTRIBUTION) or []
        distribution = importlib.metadata.distribution(MIMALLOC_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    libraries = sorted((f for f in files if f.name.startswith("libmimalloc.so")), key=lambda f: len(f.name))
    for library in libraries:
        path = Path(str(distribution.locate_file(library))).resolve()
        if path.is_file():
            return path
    return None


def _choice(environ: Mapping[str, str]) -> str:
    """``FASTRERANK_ALLOCATOR`` as given (lower case), ``auto`` when unset or empty."""
    return environ.get(ENV_CHOICE, "auto").strip().lower() or "auto"


def _glibc_env(environ: Mapping[str, str]) -> dict[str, str]:
    env = {name: value for name, value in GLIBC_ENV.items() if name not in environ}  # the user's own values win
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        env["GLIBC_TUNABLES"] = f"{tunables}:{GLIBC_TUNABLES}" if tunables else GLIBC_TUNABLES
    return env


_AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


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


def _isa_env(environ: Mapping[str, str], flags: frozenset[str]) -> dict[str, str]:
    # CTranslate2 picks AVX2 on AMD CPUs that have AVX-512; forcing AVX-512 measured ~5% faster
    # (benchmarks/RESULTS.md). The user's own CT2_FORCE_CPU_ISA wins.
    if "CT2_FORCE_CPU_ISA" in environ or not _AVX512_FLAGS <= flags:
        return {}
    return {"CT2_FORCE_CPU_ISA": "AVX512"}


def plan_allocator(
    environ: Mapping[str, str] | None = None, *, platform: str | None = None, flags: frozenset[str] | None = None
) -> AllocatorPlan | None:
    """Decide how the process should run; ``None`` when it should be left as it is.

    ``None`` when: not on Linux, the process was already re-executed (:data:`ENV_MARKER`),
    ``FASTRERANK_ALLOCATOR=system``, or the user preloads a library of their own (``LD_PRELOAD``).
    ``auto`` (and ``glibc``) give glibc's switches, ``mimalloc`` the preloaded library; on a CPU
    with AVX-512, both also set ``CT2_FORCE_CPU_ISA=AVX512`` unless it is set. An unknown
    ``FASTRERANK_ALLOCATOR`` value, or ``mimalloc`` when it is not installed, logs a warning and
    falls back to glibc's switches.
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    choice = _choice(environ)
    if not platform.startswith("linux") or ENV_MARKER in environ or choice == "system":
        return None
    if environ.get("LD_PRELOAD"):
        return None  # the user already chose; do not stack allocators
    if choice not in CHOICES:
        logger.warning("%s=%r is not valid (accepted: %s); using auto", ENV_CHOICE, choice, ", ".join(CHOICES))
        choice = "auto"
    isa = _isa_env(environ, cpu_flags() if flags is None else flags)
    if choice == "mimalloc":
        library = find_mimalloc()
        if library is not None:
            return AllocatorPlan("mimalloc", {"LD_PRELOAD": str(library), **isa})
        logger.warning("%s=mimalloc but %s is not installed; using glibc's switches", ENV_CHOICE, MIMALLOC_DISTRIBUTION)
    env = {**_glibc_env(environ), **isa}
    return AllocatorPlan("glibc", env) if env else None


def reexec_with_fast_allocator(argv: Sequence[str] | None = None) -> None:
    """Re-execute this process under a caching allocator when that helps; otherwise return.

    Call it first thing in a command line's ``main()``, before any thread or model exists, and
    only when running as the program (not when ``main`` is called from tests or other code).
    On success it does not return: the process image is replaced (same pid), with the
    environment of :func:`plan_allocator` and :data:`ENV_MARKER` set so that it happens once.

    Args:
        argv: the full command line to run again, interpreter first; ``sys.orig_argv`` by
            default (it keeps ``-m`` and interpreter options).

    Example:
        >>> def main() -> int:  # doctest: +SKIP
        ...     reexec_with_fast_allocator()
        ...     ...
    """
    plan = plan_allocator()
    if plan is None:
        return
    command = list(sys.orig_argv if argv is None else argv)
    if not command:
        return
    env = {**os.environ, **plan.env, ENV_MARKER: plan.name}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command, env)
    except OSError as err:  # exec failed: carry on under the system allocator
        logger.warning("could not re-execute under %s (%s); continuing with the system allocator", plan.name, err)


# The same switches as GLIBC_ENV, as mallopt(3) parameters: set at run time they measured as fast
# as the environment variables (base model, 32 documents of 64-448 tokens, 2 threads: 8.4-8.9 s
# with glibc's defaults, 4.6-4.8 s with these; without M_ARENA_MAX 6.6-6.9 s).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
GLIBC_MALLOPT: Mapping[int, int] = {
    _M_ARENA_MAX: 1,
    _M_MMAP_THRESHOLD: 32 << 20,
    _M_TRIM_THRESHOLD: 1 << 30,
    _M_TOP_PAD: 256 << 20,
}
_tuned_lock = threading.Lock()
_tuned = False


def should_tune_malloc(environ: Mapping[str, str] | None = None, *, platform: str | None = None) -> bool:
    """Whether :func:`tune_malloc` should act: on Linux with glibc, unless the user chose an allocator.

    ``False`` with ``FASTRERANK_ALLOCATOR=system`` (or ``mimalloc``), with ``LD_PRELOAD`` set, when
    any ``MALLOC_*`` variable is set (the user's own tuning, or the command line's re-execution),
    or on another platform or C library.
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    choice = _choice(environ)
    if not platform.startswith("linux") or choice in ("system", "mimalloc") or environ.get("LD_PRELOAD"):
        return False
    if any(name.startswith("MALLOC_") for name in environ):
        return False
    import platform as platform_module

    return platform_module.libc_ver()[0] == "glibc"


def tune_malloc() -> bool:
    """Apply glibc's caching switches (:data:`GLIBC_MALLOPT`) to this process, once; whether it did.

    :class:`fastrerank.Reranker` calls this when it loads a model on the CPU: CTranslate2 frees
    and re-maps its activation buffers on every batch, and with glibc's defaults about 40% of the
    time goes to page faults. The cost to the host process: freed memory (up to 1 GiB) is kept for
    reuse instead of returned to the system, and threads share one malloc arena. Opt out with
    ``FASTRERANK_ALLOCATOR=system``; nothing is changed when :func:`should_tune_malloc` is false.
    """
    global _tuned
    with _tuned_lock:
        if _tuned or not should_tune_malloc():
            return False
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            applied = all(libc.mallopt(param, value) == 1 for param, value in GLIBC_MALLOPT.items())
        except (OSError, AttributeError):
            return False
        _tuned = applied
        if applied:
            logger.info("tuned glibc malloc for CTranslate2 (FASTRERANK_ALLOCATOR=system opts out)")
        return applied


def tune_cpu_isa(environ: MutableMapping[str, str] | None = None, *, flags: frozenset[str] | None = None) -> bool:
    """Let CTranslate2 use its AVX-512 kernels on a CPU that has them; whether it set anything.

    CTranslate2 selects AVX-512 only on Intel CPUs; on an AMD Zen 4 with AVX-512 it picks AVX2,
    and forcing AVX-512 measured 4-5% faster (``benchmarks/RESULTS.md``). It reads
    ``CT2_FORCE_CPU_ISA`` when it loads its first model, so :class:`fastrerank.Reranker` calls
    this just before. Nothing is set when the variable is already set (the user's choice), with
    ``FASTRERANK_ALLOCATOR=system``, or on a CPU without AVX-512. A process that already ran a
    CTranslate2 model keeps the ISA it selected then.
    """
    environ = os.environ if environ is None else environ
    choice = _choice(environ)
    if choice == "system":
        return False
    isa = _isa_env(environ, cpu_flags() if flags is None else flags)
    environ.update(isa)
    return bool(isa)


def _main() -> None:
    """Print ``export`` lines for the recommended allocator environment (for launchers and services)."""
    plan = plan_allocator({key: value for key, value in os.environ.items() if key != ENV_MARKER})
    for name, value in (plan.env if plan else {}).items():
        print(f"export {name}={value}")


if __name__ == "__main__":
    _main()

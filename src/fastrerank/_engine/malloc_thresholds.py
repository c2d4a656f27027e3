"""Keep CTranslate2's per-batch buffers in glibc's heap, without changing any malloc setting.

CTranslate2 has no caching allocator on the CPU: every batch allocates its activation buffers and
frees them at the end. glibc's malloc maps a block larger than its *mmap threshold* with its own
``mmap`` and hands free memory at the top of a heap back to the kernel once it exceeds the *trim
threshold*. Both thresholds are dynamic: they start low (128 KiB and 256 KiB) and glibc raises
them whenever the program frees a mapped block, up to a ceiling of 32 MiB and 64 MiB on 64-bit
Linux, so that a program that keeps allocating the same large blocks stops paying for mapping
them again. A batch of full 512-token windows frees its largest buffer (the attention
probabilities) at a size that lifts the thresholds only part of the way, while the batch leaves
more than the trim threshold free at the top of its thread's heap: glibc then returns those pages
after every batch and the next batch faults every one of them in again (``benchmarks/RESULTS.md``
has the measured cost).

:func:`raise_dynamic_thresholds` does, once per process, what glibc does by itself in any program
that frees a 32 MiB block: it allocates and frees one such block, which moves the dynamic
thresholds to their ceiling. No ``mallopt`` parameter is set, glibc stays in its dynamic mode,
and arenas are left alone (a thread still gets an arena of its own); freed memory above 64 MiB at
the top of a heap is still returned to the system. The thresholds are the process's, not
CTranslate2's: afterwards the host's own blocks of 128 KiB to 32 MiB come from the heap too, and
each arena may keep up to 64 MiB free at its top, as in any program that freed such a block.
:func:`fastrerank.tune_process` remains the opt-in for changing malloc's settings.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["CEILING", "ceiling_block", "on_glibc", "raise_dynamic_thresholds"]

# glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit targets bounds the freed mapped chunks that raise
# the dynamic mmap threshold (the trim threshold follows at twice it). A mapped chunk is a whole
# number of pages, and glibc compares its size field with the flag bits set, so a chunk of exactly
# 32 MiB does not count: the block is one page less, with room for the chunk header.
CEILING = 32 << 20
_CHUNK_OVERHEAD = 32

_lock = threading.Lock()
_done = False


def on_glibc() -> bool:
    """Whether this process runs on glibc (Linux; not musl, not macOS)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):  # musl has no such name
        return False


def ceiling_block() -> int:
    """The request whose mapped chunk is the largest that still raises glibc's thresholds (its size
    is the ceiling less one page, whatever the page size)."""
    return CEILING - os.sysconf("SC_PAGESIZE") - _CHUNK_OVERHEAD


def raise_dynamic_thresholds() -> bool:
    """Free one ceiling-sized block through the process's ``malloc`` (glibc only, once per process).

    Returns whether it did so now: ``False`` where it was done before (a forked child inherits
    the parent's thresholds with its heap) or where the C library is not glibc.
    """
    global _done
    with _lock:
        if _done or not on_glibc():
            return False
        _done = True
        import ctypes

        libc = ctypes.CDLL(None)  # the malloc every library of this process calls (a preloaded one included)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free.restype = None
        libc.free(libc.malloc(ceiling_block()))  # free(NULL) does nothing
        return True


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent's thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

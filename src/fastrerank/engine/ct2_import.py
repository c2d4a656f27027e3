"""The one place fastrerank imports CTranslate2, giving its CPU buffers an allocator of their own.

CTranslate2 allocates and frees its activation buffers on every batch, through MKL's
``mkl_malloc``/``mkl_free``, which call whatever MKL's exported, replaceable function pointers
``i_malloc``, ``i_calloc``, ``i_realloc`` and ``i_free`` point at (glibc's malloc by default). Tuning
glibc's malloc for that pattern (one arena, no trimming) helps, but retunes every thread of the
host process. Instead, when the ``cmeel-mimalloc`` wheel is installed, those four pointers are
pointed at mimalloc's functions (``mi_malloc``, ``mi_calloc``, ``mi_realloc``, ``mi_cfree``): mimalloc
keeps freed buffers for the next batch, in memory of its own. Nothing else in the process uses
it; the host's malloc is untouched, and mimalloc is loaded privately (``RTLD_LOCAL``), so no other
library's ``malloc`` resolves to it.

The pointers may only change before MKL's first allocation, or a buffer from one allocator
would be freed by the other. So this is done right after CTranslate2 is first imported, and only
when fastrerank is the one importing it: when something else imported ``ctranslate2`` first (and
may have run a model), the pointers are left alone. ``mi_cfree`` frees only what mimalloc
allocated, so a stray earlier buffer would leak instead of corrupting memory. Where the hooks
or mimalloc are missing (another platform, a CTranslate2 build without MKL), nothing changes:
:func:`fastrerank.tune_process` is then the explicit opt-in for a process that is yours.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import logging
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

__all__ = ["ct2_allocator", "import_ctranslate2"]

logger = logging.getLogger(__name__)

_HOOKS = (("i_malloc", "mi_malloc"), ("i_calloc", "mi_calloc"), ("i_realloc", "mi_realloc"), ("i_free", "mi_cfree"))
_MIMALLOC_DISTRIBUTION = "cmeel-mimalloc"
_lock = threading.Lock()
_allocator: str | None = None  # what CTranslate2's CPU buffers come from, once decided


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread importing CTranslate2 during the fork was not copied


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def import_ctranslate2() -> ModuleType:
    """``import ctranslate2``, installing the buffer allocator on the first import (see the module docstring)."""
    global _allocator
    if _allocator is not None:
        return sys.modules["ctranslate2"]
    with _lock:
        imported_before = "ctranslate2" in sys.modules
        module = importlib.import_module("ctranslate2")
        if _allocator is None:
            _allocator = "system" if imported_before else _install_mimalloc_hooks(module)
            logger.debug("CTranslate2's CPU buffers come from %s", _allocator)
        return module


def ct2_allocator() -> str | None:
    """``"mimalloc"`` or ``"system"`` once CTranslate2 was imported through :func:`import_ctranslate2`, else ``None``."""
    return _allocator


def _install_mimalloc_hooks(ctranslate2: ModuleType) -> str:
    library = _ctranslate2_library(ctranslate2)
    mimalloc = _mimalloc_library()
    if library is None or mimalloc is None:
        return "system"
    try:
        ct2 = ctypes.CDLL(str(library), mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        hooks = [ctypes.c_void_p.in_dll(ct2, hook) for hook, _ in _HOOKS]
        mi = ctypes.CDLL(str(mimalloc), mode=os.RTLD_LOCAL)
        functions = [ctypes.cast(getattr(mi, name), ctypes.c_void_p).value for _, name in _HOOKS]
    except (OSError, ValueError, AttributeError) as err:  # a build without MKL's hooks, or an odd mimalloc
        logger.debug("not giving CTranslate2 its own allocator: %s", err)
        return "system"
    for hook, function in zip(hooks, functions):
        hook.value = function
    return "mimalloc"


def _ctranslate2_library(ctranslate2: ModuleType) -> Path | None:
    if not sys.platform.startswith("linux"):
        return None
    if ctranslate2.__file__ is None:
        return None
    libs = Path(ctranslate2.__file__).resolve().parent.parent / "ctranslate2.libs"
    found = sorted(libs.glob("libctranslate2*.so*")) if libs.is_dir() else []
    return found[0] if found else None


def _mimalloc_library() -> Path | None:
    try:
        distribution = importlib.metadata.distribution(_MIMALLOC_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or []:
        if file.name == "libmimalloc.so":
            path = Path(str(distribution.locate_file(file))).resolve()
            if path.is_file():
                return path
    return None

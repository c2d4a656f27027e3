"""Import CTranslate2 so that its OpenMP threads sleep when they have nothing to do.

The CTranslate2 wheel for Linux bundles its own copy of GNU libgomp (in ``ctranslate2.libs/``),
which reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, as it loads. Left unset, every
thread of a team busy-waits after each parallel region before it sleeps. A transformer layer runs
many short parallel regions, so on a machine whose cores are also busy with something else (the
host's own threads, other workers of a prefork server, other processes) the waiting threads take
the cores from the threads they wait for, and a call can take several times as long
(``benchmarks/RESULTS.md``).

:func:`import_ctranslate2` therefore loads that bundled libgomp by itself first, with
``OMP_WAIT_POLICY=PASSIVE`` in the environment for the duration of that one ``dlopen``, puts
``os.environ`` back, and only then imports ``ctranslate2``, whose extension finds the library
already loaded. No other OpenMP runtime (torch's, a system libgomp) loads inside that window.
A user's ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins; a build without a bundled libgomp
(another platform, a source or conda build sharing the system's) is imported as it is; and a
process that imported CTranslate2 before fastrerank keeps what libgomp read then.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from ._scoped_env import ScopedVariable

__all__ = ["WAIT_POLICY_VARIABLES", "bundled_libgomp", "import_ctranslate2"]

WAIT_POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_lock = threading.Lock()
_wait_policy = ScopedVariable("OMP_WAIT_POLICY")


def bundled_libgomp() -> Path | None:
    """The libgomp that the installed CTranslate2 wheel bundles, found without importing it; or ``None``."""
    try:
        spec = importlib.util.find_spec("ctranslate2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(next(iter(spec.submodule_search_locations))).parent / "ctranslate2.libs"
    found = sorted(libs.glob("libgomp*.so*")) if libs.is_dir() else []
    return found[0] if len(found) == 1 else None


def import_ctranslate2() -> ModuleType:
    """``import ctranslate2``; the first time, with its bundled libgomp loaded to sleep when idle."""
    if "ctranslate2" not in sys.modules:
        with _lock:
            libgomp = None
            if "ctranslate2" not in sys.modules and not any(name in os.environ for name in WAIT_POLICY_VARIABLES):
                libgomp = bundled_libgomp()
            if libgomp is not None:
                import ctypes

                with _wait_policy.set_to("PASSIVE"):
                    try:
                        ctypes.CDLL(str(libgomp))  # libgomp reads its environment here, once
                    except OSError:
                        pass  # the import below loads it the usual way
    import ctranslate2

    return ctranslate2


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent's thread may have held it at the fork (ScopedVariable removes its variable)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

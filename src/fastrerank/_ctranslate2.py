"""Import CTranslate2 so that its OpenMP threads sleep when they have nothing to do.

The CTranslate2 wheel bundles its own copy of GNU libgomp, which reads ``OMP_WAIT_POLICY`` and
``GOMP_SPINCOUNT`` once, when the library is loaded by ``import ctranslate2``. Left unset, every
thread of a team busy-waits after each parallel region before it sleeps. A transformer layer runs
many short parallel regions, so on a machine whose cores are also busy with something else (the
host's own threads, other workers of a prefork server, other processes) the waiting threads take
the cores from the threads they wait for, and a call can take several times as long
(``benchmarks/RESULTS.md``). :func:`import_ctranslate2` sets ``OMP_WAIT_POLICY=PASSIVE`` for the
duration of the first import and puts ``os.environ`` back right after, so that only CTranslate2's
own libgomp sees it. A user's ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins, and a process that
imported CTranslate2 before fastrerank keeps what it had.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

__all__ = ["WAIT_POLICY_VARIABLES", "import_ctranslate2"]

WAIT_POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_lock = threading.Lock()
_set_now = False  # OMP_WAIT_POLICY is in os.environ for an import in progress


def import_ctranslate2() -> ModuleType:
    """``import ctranslate2``; the first time, with libgomp's idle threads set to sleep at once."""
    global _set_now
    if "ctranslate2" not in sys.modules:
        with _lock:
            if "ctranslate2" not in sys.modules and not any(name in os.environ for name in WAIT_POLICY_VARIABLES):
                os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
                _set_now = True
                try:
                    import ctranslate2  # noqa: F401  (libgomp reads its environment as it loads)
                finally:
                    os.environ.pop("OMP_WAIT_POLICY", None)
                    _set_now = False
    import ctranslate2

    return ctranslate2


def _after_fork_in_child() -> None:
    global _lock, _set_now
    _lock = threading.Lock()  # a parent's thread may have held it at the fork
    if _set_now:  # forked in the middle of the import: the child's environment is the user's
        os.environ.pop("OMP_WAIT_POLICY", None)
        _set_now = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

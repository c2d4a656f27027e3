"""Let ``fork`` happen only while no thread of this process is inside CTranslate2.

A child made by ``fork`` gets a copy of every lock of the parent, held or not, and only the
forking thread. A thread that was inside CTranslate2 at that moment (loading a model: an
OpenMP parallel loop, MKL's memory manager; running a batch) may hold one of their locks, and
the child's first model load then waits for it forever. So the CTranslate2 work of this
process runs in *native sections*, and a ``fork`` (``os.fork``, multiprocessing's ``fork``,
gunicorn) waits in a before-fork handler until no section is running, keeping new ones out
until the fork is done. The wait is at most one model load or the batches in progress, one per
encoder replica (a batch is bounded by ``batch_tokens``). ``subprocess`` does not run these handlers and is never delayed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["native_section"]

_condition = threading.Condition(threading.Lock())
_running = 0  # native sections in progress
_forking = False  # a fork is waiting for them to end; new sections wait for the fork


@contextmanager
def native_section() -> Iterator[None]:
    """Run the enclosed CTranslate2 work with no ``fork`` of this process in between."""
    global _running
    with _condition:
        while _forking:
            _condition.wait()
        _running += 1
    try:
        yield
    finally:
        with _condition:
            _running -= 1
            if _running == 0:
                _condition.notify_all()


def _before_fork() -> None:
    global _forking
    _condition.acquire()
    _forking = True
    while _running:
        _condition.wait()
    # The lock stays held through the fork: no section can start until the after-fork handlers.


def _after_fork_in_parent() -> None:
    global _forking
    _forking = False
    _condition.notify_all()
    _condition.release()


def _after_fork_in_child() -> None:
    global _condition, _forking, _running
    # The child has only the forking thread, which was in no section.
    _condition = threading.Condition(threading.Lock())
    _forking = False
    _running = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)

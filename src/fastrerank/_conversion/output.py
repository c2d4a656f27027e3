"""Where a conversion may write: the output check, one conversion per output, the stale-temporary sweep.

``force`` replaces only a previous conversion, never the source or a folder the user made.
Conversions into one output in one process take turns; temporaries are named
``<output>.tmp-<pid>-<id>``, matched literally, and swept only when their writer is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .. import _model_format as model_format
from ..errors import ConversionError

__all__ = ["check_output", "in_flight", "output_lock", "remove_stale_temporaries"]

_STALE_AFTER_S = 3600.0


def check_output(output_dir: Path, *, force: bool, source: Path | None = None) -> None:
    """Refuse an output that would lose data, before anything is read or written.

    An absent output is fine (also inside ``source``). An existing one is replaced only with
    ``force`` and only if it is a fastrerank conversion (it has ``fastrerank.json``): ``force``
    never deletes a folder the user made, a file, a symbolic link, the source or a folder holding it.

    Raises:
        ConversionError: saying which of these the output is; nothing was changed.
    """
    shown = str(output_dir)
    if source is not None:
        real_output, real_source = Path(os.path.realpath(output_dir)), Path(os.path.realpath(source))
        if real_output == real_source or real_output in real_source.parents:
            what = "is the source folder" if real_output == real_source else f"contains the source folder {str(source)!r}"
            raise ConversionError(f"output {shown!r} {what}; choose another output folder (nothing was changed)")
    if not os.path.lexists(output_dir):
        return
    if output_dir.is_symlink() or not output_dir.is_dir():
        kind = "a symbolic link" if output_dir.is_symlink() else "a file"
        raise ConversionError(
            f"output {shown!r} exists and is {kind}, not a converted folder; fastrerank never replaces it, "
            "even with force=True: choose another output or remove it yourself (nothing was changed)"
        )
    if not model_format.is_converted_folder(output_dir):
        raise ConversionError(
            f"output {shown!r} exists and is not a fastrerank conversion (it has no {model_format.METADATA_FILE}); "
            "force=True only replaces a converted folder: choose another output or remove it yourself "
            "(nothing was changed)"
        )
    if not force:
        raise ConversionError(f"{shown!r} exists; pass force=True to replace it")


# Conversions into one output in one process run one after the other: the second then finds the
# first one's result (and refuses, or replaces it with force) instead of racing it for the rename.
_output_locks: dict[str, tuple[threading.Lock, int]] = {}
_live_temporaries: set[str] = set()  # this process's temporary folders still being written
_registry_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The parent's converting threads were not copied: their locks and temporaries are not ours.
    global _registry_lock, _output_locks, _live_temporaries
    _registry_lock = threading.Lock()
    _output_locks = {}
    _live_temporaries = set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def output_lock(output_dir: Path) -> Iterator[None]:
    """Hold the lock of ``output_dir`` (by its real path) for this process; released when unused."""
    key = os.path.realpath(output_dir)
    with _registry_lock:
        lock, users = _output_locks.get(key, (threading.Lock(), 0))
        _output_locks[key] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _registry_lock:
            lock, users = _output_locks[key]
            if users == 1:
                del _output_locks[key]
            else:
                _output_locks[key] = (lock, users - 1)


@contextlib.contextmanager
def in_flight(temporary: Path) -> Iterator[None]:
    """Mark ``temporary`` as being written by this process, so that no sweep removes it meanwhile."""
    with _registry_lock:
        _live_temporaries.add(str(temporary))
    try:
        yield
    finally:
        with _registry_lock:
            _live_temporaries.discard(str(temporary))


def remove_stale_temporaries(output_dir: Path, *, keep: Path | None = None) -> None:
    """Delete ``<output>.tmp-<pid>-<id>`` folders whose process is gone or that are over an hour old.

    The names are matched literally (an output named ``m[1]`` or ``*`` is no pattern). A temporary
    of this process is stale unless a conversion is still writing it (its pid was reused, as pid 1
    is in every container). ``keep`` (the source) and any folder holding it are never removed.
    """
    parent = output_dir.parent
    if not parent.is_dir():
        return
    pattern = re.compile(re.escape(output_dir.name) + r"\.tmp-(\d+)-[0-9A-Za-z]+")
    kept = os.path.realpath(keep) if keep is not None else None
    now = time.time()
    for path in parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_dir():
            continue
        with _registry_lock:
            live = str(path) in _live_temporaries
        real = os.path.realpath(path)
        if live or (kept is not None and (kept == real or kept.startswith(real + os.sep))):
            continue
        try:
            pid = int(match.group(1))
            alive = pid != os.getpid() and _pid_alive(pid)
            if not alive or now - path.stat().st_mtime > _STALE_AFTER_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""An environment variable set only while a native library reads it, then removed again.

CTranslate2 reads ``CT2_FORCE_CPU_ISA`` when it loads its first model, and its bundled libgomp
reads ``OMP_WAIT_POLICY`` when it is loaded. fastrerank sets each for that moment only, so that
``os.environ`` holds nothing the user did not put there once the moment has passed. A child
forked inside the window gets the variable removed too: the thread that would have removed it
does not exist there. Callers serialise their windows with locks of their own, which also guard
the state that decides whether a window is needed at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

__all__ = ["ScopedVariable"]


class ScopedVariable:
    """One environment variable that :meth:`set_to` puts in place for the length of a ``with`` block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._set_in: MutableMapping[str, str] | None = None  # where it is set right now
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    @contextmanager
    def set_to(self, value: str | None, environ: MutableMapping[str, str] | None = None) -> Iterator[None]:
        """Set the variable to ``value`` in ``environ`` (``os.environ`` by default) inside the block,
        and remove it on the way out; ``None`` sets nothing."""
        if value is None:
            yield
            return
        environ = os.environ if environ is None else environ
        self._set_in = environ  # before the variable: a fork in between must not keep it
        environ[self.name] = value
        try:
            yield
        finally:
            environ.pop(self.name, None)
            self._set_in = None

    def _after_fork_in_child(self) -> None:
        if self._set_in is not None:
            self._set_in.pop(self.name, None)
            self._set_in = None

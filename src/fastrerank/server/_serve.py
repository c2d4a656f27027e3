"""``serve``: load rerankers and run the app under uvicorn (what ``fastrerank serve`` calls)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from types import FrameType

import uvicorn

from fastrerank.errors import InvalidInputError
from fastrerank.server._app import create_app
from fastrerank.server._protocol import guarded_protocol

__all__ = ["serve"]

logger = logging.getLogger("fastrerank.server")

_ANY_ADDRESS = {"0.0.0.0", "::", "[::]", ""}


def serve(
    models: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    *,
    device: str = "auto",
    compute_type: str = "default",
    max_body_bytes: int = 2_000_000,
    max_documents: int = 1000,
    max_concurrency: int = 4,
    max_queue: int | None = None,
    queue_timeout: float = 30.0,
    body_timeout: float = 30.0,
    max_body_bytes_in_flight: int | None = None,
    header_timeout: float = 10.0,
    keep_alive_timeout: float = 5.0,
    max_connections: int = 512,
    graceful_timeout: float = 30.0,
    log_level: str = "info",
) -> None:
    """Load ``fastrerank.Reranker(path)`` for each ``name: path`` and serve them until SIGTERM
    or Ctrl-C; in-flight requests are finished (up to ``graceful_timeout`` seconds; past it they
    are answered 503 in their route's shape) and the rerankers closed.

    Connections: a request head must arrive within ``header_timeout`` seconds, an idle
    kept-alive connection is closed after ``keep_alive_timeout``, and past ``max_connections``
    open ones a new connection is closed at once. The other limits are :func:`create_app`'s.
    Requests are logged on ``fastrerank.server.access`` (uvicorn's own access log is off).

        >>> serve({"bge": "BAAI/bge-reranker-v2-m3"}, port=8000)  # doctest: +SKIP
    """
    import fastrerank

    if host in _ANY_ADDRESS and not api_key:
        logger.warning(
            "serving on %s (every network interface) without an API key: anyone who can reach "
            "this port can use it; pass api_key or bind 127.0.0.1",
            host or "all interfaces",
        )
    for name, seconds in (("header_timeout", header_timeout), ("keep_alive_timeout", keep_alive_timeout),
                          ("graceful_timeout", graceful_timeout)):
        if not seconds > 0:
            raise InvalidInputError(f"{name} must be > 0 seconds, got {seconds!r}")
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise InvalidInputError(f"max_connections must be an int >= 1, got {max_connections!r}")
    rerankers: dict[str, fastrerank.Reranker] = {}
    try:
        for name, path in models.items():
            rerankers[name] = fastrerank.Reranker(path, device=device, compute_type=compute_type)
        app = create_app(
            rerankers,
            api_key=api_key,
            max_body_bytes=max_body_bytes,
            max_documents=max_documents,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            body_timeout=body_timeout,
            max_body_bytes_in_flight=max_body_bytes_in_flight,
        )
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            log_config=None,  # uvicorn's default would install handlers on its loggers in the caller's process
            access_log=False,
            http=guarded_protocol(header_timeout=header_timeout, max_connections=max_connections),
            timeout_keep_alive=keep_alive_timeout,  # type: ignore[arg-type]  # uvicorn reads a float
            timeout_graceful_shutdown=graceful_timeout,  # type: ignore[arg-type]
        )
        server = uvicorn.Server(config)
        with _sigterm_stops_gracefully(server):
            server.run()
    finally:
        for reranker in rerankers.values():
            reranker.close()


@contextlib.contextmanager
def _sigterm_stops_gracefully(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM is a normal end: stop gracefully and exit 0.

    While it serves, uvicorn handles SIGTERM itself (stop accepting, finish the requests in
    flight), then raises the signal again so that the process dies of it (exit -15). This
    handler, in place before and after uvicorn's, ignores that second signal once uvicorn is
    stopping, and asks uvicorn to stop if the signal comes before uvicorn took over.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not server.should_exit:
            server.handle_exit(signum, frame)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

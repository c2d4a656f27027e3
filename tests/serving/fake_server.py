"""Run :func:`fastrerank.server.serve` over fake rerankers: ``python tests/fake_server.py --port N``.

``fastrerank.Reranker`` is replaced by :class:`FakeReranker` before ``serve`` loads the models,
so the real entry point (loading, uvicorn, graceful shutdown, closing) is what runs.
"""

from __future__ import annotations

import argparse
import functools

from fake_reranker import FakeReranker

import fastrerank
from fastrerank.server import serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--calls-file")
    parser.add_argument("--api-key")
    parser.add_argument("--max-body-bytes", type=int, default=2_000_000)
    parser.add_argument("--max-documents", type=int, default=1000)
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--max-queue", type=int)
    parser.add_argument("--queue-timeout", type=float, default=30.0)
    # Passed to serve() only when given, so that the suite's tests run against older serve()s too.
    parser.add_argument("--body-timeout", type=float)
    parser.add_argument("--header-timeout", type=float)
    parser.add_argument("--max-connections", type=int)
    parser.add_argument("--max-body-bytes-in-flight", type=int)
    parser.add_argument("--graceful-timeout", type=float, default=20.0)
    parser.add_argument("--access-log", action="store_true", help="print the access log on stderr")
    args = parser.parse_args()
    if args.access_log:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    given = {name: getattr(args, name) for name in ("body_timeout", "header_timeout", "max_connections", "max_body_bytes_in_flight")}
    fake = functools.partial(FakeReranker, delay=args.delay, calls_file=args.calls_file)
    fastrerank.Reranker = fake  # type: ignore[attr-defined]
    serve(
        {name: f"/models/{name}" for name in args.model or ["fake"]},
        host="127.0.0.1",
        port=args.port,
        api_key=args.api_key,
        max_body_bytes=args.max_body_bytes,
        max_documents=args.max_documents,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        queue_timeout=args.queue_timeout,
        graceful_timeout=args.graceful_timeout,
        log_level="warning",
        **{name: value for name, value in given.items() if value is not None},
    )


if __name__ == "__main__":
    main()

"""The ``fastrerank`` command: ``convert``, ``rank``, ``serve``, ``verify`` and ``env``, over the public API only."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence

from ._conversion import QUANTIZATIONS
from ._reranker import DEFAULT_MODEL
from ._validation import DEFAULT_MAX_CHUNKS_PER_DOC, DEFAULT_OVERLAP_TOKENS
from .errors import FastRerankError, InvalidInputError, InvalidTypeError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastrerank", description="Fast reranking with XLM-R cross-encoders on CTranslate2.")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert a Hugging Face reranker to a fastrerank folder")
    convert.add_argument("model", help="local Hugging Face model folder or hub id")
    convert.add_argument("output_dir")
    convert.add_argument("--quantization", default="int8", choices=QUANTIZATIONS)
    convert.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    convert.add_argument("--force", action="store_true", help="replace an existing output that is a previous conversion (never another folder or file)")
    convert.add_argument("--allow-pickle", action="store_true",
                         help="accept pytorch_model.bin (read with torch.load(weights_only=True))")

    rank = commands.add_parser("rank", help="rank documents for a query and print JSON")
    rank.add_argument("query")
    rank.add_argument("documents", nargs="*", help="documents; read one per line from stdin when none are given")
    rank.add_argument("--model", default=DEFAULT_MODEL, help=f"converted folder, Hugging Face folder or hub id (default {DEFAULT_MODEL})")
    rank.add_argument("--top-n", type=int, default=None)
    rank.add_argument("--max-length", type=int, default=None)
    rank.add_argument("--overlap-tokens", type=int, default=DEFAULT_OVERLAP_TOKENS)
    rank.add_argument("--max-chunks-per-doc", type=int, default=DEFAULT_MAX_CHUNKS_PER_DOC)
    rank.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    rank.add_argument("--compute-type", default="default")
    rank.add_argument("--return-documents", action="store_true")

    serve = commands.add_parser("serve", help="serve the hosted rerank APIs over HTTP")
    serve.add_argument("--model", action="append", default=None,
                       help="MODEL or NAME=MODEL; repeat to serve several (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", default=os.environ.get("FASTRERANK_API_KEY"),
                       help="require 'Authorization: Bearer KEY' (default: $FASTRERANK_API_KEY, else none)")
    serve.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    serve.add_argument("--compute-type", default="default")
    serve.add_argument("--max-body-bytes", type=int, default=2_000_000, help="larger bodies get a 413 (default %(default)s)")
    serve.add_argument("--max-documents", type=int, default=1000, help="documents per request (default %(default)s)")
    serve.add_argument("--max-concurrency", type=int, default=4, help="rankings run at once (default %(default)s)")
    serve.add_argument("--max-queue", type=int, default=None,
                       help="requests that may wait for a slot before a 429 (default: --max-concurrency)")
    serve.add_argument("--queue-timeout", type=float, default=30.0,
                       help="seconds a request may wait for a slot before a 503 (default %(default)s)")
    serve.add_argument("--body-timeout", type=float, default=30.0,
                       help="seconds a request body may take to arrive before a 408 (default %(default)s)")
    serve.add_argument("--max-body-bytes-in-flight", type=int, default=None,
                       help="bytes of request bodies held at once, all requests together, before a 429 "
                            "(default: 32 x --max-body-bytes)")
    serve.add_argument("--header-timeout", type=float, default=10.0,
                       help="seconds a connection may take to send a request head before it is closed (default %(default)s)")
    serve.add_argument("--keep-alive-timeout", type=float, default=5.0,
                       help="seconds an idle kept-alive connection stays open (default %(default)s)")
    serve.add_argument("--max-connections", type=int, default=512,
                       help="open connections; past it a new one is closed at once (default %(default)s)")
    serve.add_argument("--graceful-timeout", type=float, default=30.0,
                       help="on SIGTERM, seconds to finish requests in flight; later ones get a 503 (default %(default)s)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                       help="log level; info logs one access line per request (default %(default)s)")

    verify = commands.add_parser("verify", help="check every file of a converted folder against its recorded sha256")
    verify.add_argument("folder")

    commands.add_parser(
        "env", help="print the export lines that tune a process for CTranslate2 before it starts (for launchers)",
        description="Print, as shell export lines, the environment variables that set fastrerank.tune_process()'s "
                    "switches (glibc's malloc, its transparent huge pages tunable, CT2_FORCE_CPU_ISA on a CPU with "
                    "AVX-512) before a process starts; variables already set are left out. Use: "
                    'eval "$(fastrerank env)"; exec python my_service.py',
    )
    return parser


def _run_convert(args: argparse.Namespace) -> int:
    from ._api import convert

    path = convert(args.model, args.output_dir, quantization=args.quantization, revision=args.revision,
                   force=args.force, allow_pickle=args.allow_pickle, progress=sys.stderr.isatty() or None)
    print(path)
    return 0


def _run_rank(args: argparse.Namespace) -> int:
    from ._reranker import Reranker

    documents = args.documents or [line.rstrip("\n") for line in sys.stdin]
    progress = _print_progress if sys.stderr.isatty() else None
    with Reranker(args.model, device=args.device, compute_type=args.compute_type, max_length=args.max_length) as reranker:
        ranking = reranker.rank(args.query, documents, args.top_n, overlap_tokens=args.overlap_tokens,
                                max_chunks_per_doc=args.max_chunks_per_doc, return_documents=args.return_documents,
                                progress=progress)
    if progress is not None:
        print(file=sys.stderr)
    output = {"results": ranking.to_dicts(), "tokens": ranking.tokens, "query_truncated": ranking.query_truncated}
    print(json.dumps(output, ensure_ascii=False, indent=2))
    return 0


def _print_progress(done: int, total: int) -> None:
    print(f"\rscored {done}/{total} windows", end="", file=sys.stderr, flush=True)


def _serve_models(specs: Sequence[str]) -> dict[str, str]:
    """``NAME=MODEL`` or ``MODEL`` -> {name: model}. A local folder is served under its own name
    (the last part of its path), so that no response or log names a path on this machine."""
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = os.path.basename(os.path.normpath(spec)) if os.path.isdir(spec) else spec
        if name in models:
            raise InvalidInputError(f"--model: two models named {name!r}; give each a name with NAME=MODEL")
        models[name] = path
    return models


def _run_serve(args: argparse.Namespace, *, own_process: bool) -> int:
    from .server import serve

    if own_process:  # the command's own process: its log lines go to stderr
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(_serve_models(args.model or [DEFAULT_MODEL]), host=args.host, port=args.port, api_key=args.api_key,
          device=args.device, compute_type=args.compute_type, max_body_bytes=args.max_body_bytes,
          max_documents=args.max_documents, max_concurrency=args.max_concurrency, max_queue=args.max_queue,
          queue_timeout=args.queue_timeout, body_timeout=args.body_timeout,
          max_body_bytes_in_flight=args.max_body_bytes_in_flight, header_timeout=args.header_timeout,
          keep_alive_timeout=args.keep_alive_timeout, max_connections=args.max_connections,
          graceful_timeout=args.graceful_timeout, log_level=args.log_level)
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from . import verify

    checked = verify(args.folder)
    print(f"ok: {len(checked)} files of {args.folder} match their sha256")
    return 0


def _run_env(args: argparse.Namespace) -> int:
    from ._tuning import recommended_environment

    for name, value in recommended_environment().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, 1 for other failures).

    Run as the program (``argv`` is ``None``), the process is the command's own, so it is tuned
    for CTranslate2 first (:func:`fastrerank.tune_process`), except for ``env``, which reports the
    environment as it is; called from Python it changes nothing.
    """
    args = _parser().parse_args(argv)
    if argv is None and args.command != "env":
        from ._tuning import tune_process

        tune_process()
    runners: dict[str, Callable[[argparse.Namespace], int]] = {"convert": _run_convert, "rank": _run_rank, "verify": _run_verify,
               "serve": functools.partial(_run_serve, own_process=argv is None), "env": _run_env}
    try:
        return runners[args.command](args)
    except (InvalidInputError, InvalidTypeError) as err:
        print(f"fastrerank {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FastRerankError as err:
        print(f"fastrerank {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""A deterministic stand-in for :class:`fastrerank.Reranker`, for schema and server tests.

Scores a document by the share of its words that appear in the query (a value in (0, 1),
distinct enough to reorder documents), keeps ties in input order, and rejects bad options
with the same error types and parameter names as the engine. ``delay`` makes each call
sleep, so server tests can hold requests in flight.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

from fastrerank.errors import InvalidInputError, InvalidTypeError
from fastrerank.results import RankedDocument, Ranking

WINDOW = 512


def fake_score(query: str, doc: str) -> float:
    """(shared words + 1) / (doc words + 2): in (0, 1), higher for more overlap."""
    query_words = set(query.lower().split())
    doc_words = doc.lower().split()
    shared = sum(1 for word in doc_words if word in query_words)
    return (shared + 1) / (len(doc_words) + 2)


class FakeReranker:
    """``rank`` and ``close`` with the engine's signatures; counts its calls.

    The constructor takes :class:`fastrerank.Reranker`'s arguments too (and ignores them), so
    a test can put this class in its place and call :func:`fastrerank.server.serve`.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        compute_type: str = "default",
        delay: float = 0.0,
        max_length: int = WINDOW,
        calls_file: str | None = None,
    ) -> None:
        self.model = model
        self.delay = delay
        self.max_length = max_length
        self.calls_file = calls_file
        self.calls = 0
        self.closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self.closed = True
        if self.calls_file is not None:
            with open(self.calls_file, "a", encoding="utf-8") as log:
                log.write("<closed>\n")

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        overlap_tokens: int = 80,
        max_chunks_per_doc: int = 1024,
        return_documents: bool = False,
        raw: bool = False,
    ) -> Ranking:
        with self._lock:
            self.calls += 1
            if self.calls_file is not None:
                with open(self.calls_file, "a", encoding="utf-8") as log:
                    log.write(f"{query}\n")
        if not isinstance(query, str):
            raise InvalidTypeError(f"query must be str, got {type(query).__name__}")
        if not query.strip():
            raise InvalidInputError("query must be a non-empty string, not only whitespace")
        for i, doc in enumerate(documents):
            if not isinstance(doc, str):
                raise InvalidTypeError(f"documents[{i}] must be str, got {type(doc).__name__}")
        if top_n is not None and top_n < 1:
            raise InvalidInputError(f"top_n must be >= 1, got {top_n}")
        if not 0 <= overlap_tokens <= 80:
            raise InvalidInputError(f"overlap_tokens must be in [0, 80], got {overlap_tokens}")
        window = self.max_length - len(query.split()) - 4
        if overlap_tokens >= window:
            raise InvalidInputError(f"overlap_tokens must be < the window W={window}, got {overlap_tokens}")
        if max_chunks_per_doc < 1:
            raise InvalidInputError(f"max_chunks_per_doc must be >= 1, got {max_chunks_per_doc}")
        if self.delay:
            time.sleep(self.delay)
        scores = [fake_score(query, doc) for doc in documents]
        if raw:
            scores = [math.log(s / (1 - s)) for s in scores]
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[:top_n]
        results = tuple(
            RankedDocument(i, scores[i], documents[i] if return_documents else None) for i in order
        )
        tokens = sum(len(query.split()) + len(doc.split()) + 4 for doc in documents)
        return Ranking(results, tokens=tokens)

"""Hugging Face text-embeddings-inference ``POST /rerank``.

Request ``{"query", "texts": [str], "raw_scores"? (false), "return_text"? (false),
"truncate"?, "truncation_direction"?}``; response ``[{"index", "score", "text"?}]``, best
first, every text ranked. ``raw_scores`` gives the model's raw logit instead of its sigmoid.
``truncate`` and ``truncation_direction`` are accepted and ignored: fastrerank scores long
texts by windows instead of cutting them. Errors are ``{"error", "error_type"}``; unlike TEI,
which answers validation errors with 413, a bad request is a 400 here.

    >>> parse_request('{"query": "q", "texts": ["a"], "raw_scores": true}').raw_scores
    True
"""

from __future__ import annotations

from typing import Any, Literal

from fastrerank.results import Ranking
from fastrerank.schemas._common import (
    Body,
    NonEmptyText,
    RankArgs,
    RequestModel,
    RerankerLike,
    StrictBool,
    StringDocuments,
    parse_body,
    run_rank,
)
from fastrerank.schemas._errors import ApiError, ErrorKind, error_kind
from fastrerank.schemas._shape import Shape

__all__ = ["SHAPE", "TeiRequest", "build_error", "build_response", "handle", "parse_request"]

# TEI's ErrorType, plus the router's own unauthorized and payload_too_large.
_ERROR_TYPES = {
    ErrorKind.VALIDATION: "validation",
    ErrorKind.UNAUTHORIZED: "unauthorized",
    ErrorKind.TOO_LARGE: "payload_too_large",
    ErrorKind.OVERLOADED: "overloaded",
    ErrorKind.UNAVAILABLE: "unhealthy",
    ErrorKind.INTERNAL: "backend",
}


class TeiRequest(RequestModel):
    query: NonEmptyText
    texts: StringDocuments
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] | None = None

    def rank_args(self) -> RankArgs:
        return RankArgs(self.query, self.texts, raw=self.raw_scores)


def parse_request(body: Body) -> TeiRequest:
    """Validate a request body; raises :class:`SchemaError` naming the field."""
    return parse_body(TeiRequest, body)


def build_response(ranking: Ranking, request: TeiRequest) -> list[dict[str, Any]]:
    """``[{"index", "score", "text"?}]``, best first."""
    results: list[dict[str, Any]] = []
    for item in ranking:
        row: dict[str, Any] = {"index": item.index, "score": item.score}
        if request.return_text:
            row["text"] = request.texts[item.index]
        results.append(row)
    return results


def build_error(error: ApiError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``{"error", "error_type"}``."""
    error_type = _ERROR_TYPES.get(error_kind(error), "validation" if error.status < 500 else "backend")
    return error.status, {"error": error.message, "error_type": error_type}


def handle(request_body: Body, reranker: RerankerLike) -> list[dict[str, Any]]:
    """Parse, rank and build; raises :class:`SchemaError` (turn it into a body with ``build_error``)."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request)


SHAPE: Shape[TeiRequest] = Shape(
    "tei", TeiRequest, "texts", lambda ranking, request, served: build_response(ranking, request), build_error,
    names_model=False,
)

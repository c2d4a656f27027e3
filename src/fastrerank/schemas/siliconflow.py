"""SiliconFlow ``POST /v1/rerank``.

Request ``{"model", "query", "documents": [str], "top_n"?, "return_documents"? (false),
"max_chunks_per_doc"? (1024), "overlap_tokens"? (80, at most 80)}``; response
``{"id", "results": [{"document"?: {"text"}, "index", "relevance_score"}],
"tokens": {"input_tokens", "output_tokens"}}`` with ``input_tokens`` the tokens run through the
model and ``output_tokens`` 0. Errors are ``{"code", "message", "data": null}``.

    >>> parse_request('{"model": "m", "query": "Apple", "documents": ["apple"]}').overlap_tokens
    80
"""

from __future__ import annotations

import uuid
from typing import Any

from fastrerank.results import Ranking
from fastrerank.schemas._common import (
    DEFAULT_MAX_CHUNKS,
    DEFAULT_OVERLAP_TOKENS,
    Body,
    MaxChunks,
    NonEmptyText,
    OverlapTokens,
    RankArgs,
    RequestModel,
    RerankerLike,
    StrictBool,
    StringDocuments,
    Text,
    TopN,
    parse_body,
    relevance_results,
    run_rank,
)
from fastrerank.schemas._errors import ApiError, ErrorKind, error_kind
from fastrerank.schemas._shape import Shape

__all__ = ["SHAPE", "SiliconFlowRequest", "build_error", "build_response", "build_tokens", "handle", "parse_request"]

# SiliconFlow's codes: 20012 model does not exist, 20015 invalid parameter, 50603 system busy.
_CODES = {ErrorKind.VALIDATION: 20015, ErrorKind.OVERLOADED: 50603, ErrorKind.UNAVAILABLE: 50603}


class SiliconFlowRequest(RequestModel):
    model: Text
    query: NonEmptyText
    documents: StringDocuments
    top_n: TopN | None = None
    return_documents: StrictBool = False
    max_chunks_per_doc: MaxChunks = DEFAULT_MAX_CHUNKS
    overlap_tokens: OverlapTokens = DEFAULT_OVERLAP_TOKENS

    @property
    def model_name(self) -> str | None:
        return self.model

    def rank_args(self) -> RankArgs:
        return RankArgs(
            self.query, self.documents, self.top_n, self.overlap_tokens, self.max_chunks_per_doc
        )


def parse_request(body: Body) -> SiliconFlowRequest:
    """Validate a request body; raises :class:`SchemaError` naming the field."""
    return parse_body(SiliconFlowRequest, body)


def build_tokens(ranking: Ranking) -> dict[str, int]:
    """SiliconFlow's ``tokens``: input = tokens run through the model, output 0."""
    return {"input_tokens": ranking.tokens, "output_tokens": 0}


def build_response(
    ranking: Ranking, request: SiliconFlowRequest, *, request_id: str | None = None
) -> dict[str, Any]:
    """The response body; ``request_id`` defaults to a random UUID."""
    return {
        "id": request_id or str(uuid.uuid4()),
        "results": relevance_results(ranking, request.documents, request.return_documents),
        "tokens": build_tokens(ranking),
    }


def error_code(error: ApiError) -> int:
    """SiliconFlow's code for an error: 20012 for the model, else by kind (the status otherwise)."""
    if error.field == "model":
        return 20012
    return _CODES.get(error_kind(error), error.status)


def build_error(error: ApiError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``{"code", "message", "data": null}``."""
    return error.status, {"code": error_code(error), "message": error.message, "data": None}


def handle(request_body: Body, reranker: RerankerLike, *, request_id: str | None = None) -> dict[str, Any]:
    """Parse, rank and build; raises :class:`SchemaError` (turn it into a body with ``build_error``)."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request, request_id=request_id)


SHAPE: Shape[SiliconFlowRequest] = Shape(
    "siliconflow",
    SiliconFlowRequest,
    "documents",
    lambda ranking, request, served: build_response(ranking, request, request_id=served.request_id),
    build_error,
)

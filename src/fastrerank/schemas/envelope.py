"""The generic cloud ``POST /api/v1/rerank`` with a response envelope.

Request ``{"model", "query", "documents", "top_n"?, "return_documents"? (false),
"parameters"?}``; ``parameters`` may carry ``top_n`` and ``return_documents`` too (the top-level
fields win), other model-specific parameters are ignored, as is the multi-modal ``input``.
Response ``{"success": true, "code": "200", "message": "successful", "data": {"results":
[{"index", "relevance_score", "document"?: {"text"}}]}}``; errors are ``{"success": false,
"code": "<status>", "message"}``.

    >>> parse_request('{"model": "m", "query": "q", "documents": ["a"], "parameters": {"top_n": 1}}').effective_top_n
    1
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from fastrerank.results import Ranking
from fastrerank.schemas._common import (
    Body,
    Documents,
    NonEmptyText,
    RankArgs,
    RequestModel,
    RerankerLike,
    StrictBool,
    Text,
    TopN,
    parse_body,
    relevance_results,
    run_rank,
)
from fastrerank.schemas._errors import ApiError
from fastrerank.schemas._shape import Shape

__all__ = ["SHAPE", "EnvelopeRequest", "build_error", "build_response", "handle", "parse_request"]


class Parameters(BaseModel):
    """Model-specific parameters; only the ones fastrerank understands are read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    top_n: TopN | None = None
    return_documents: StrictBool | None = None


class EnvelopeRequest(RequestModel):
    model: Text
    query: NonEmptyText
    documents: Documents
    top_n: TopN | None = None
    return_documents: StrictBool | None = None
    parameters: Parameters | None = None

    @property
    def model_name(self) -> str | None:
        return self.model

    @property
    def effective_top_n(self) -> int | None:
        """``top_n``, else ``parameters.top_n``."""
        if self.top_n is not None or self.parameters is None:
            return self.top_n
        return self.parameters.top_n

    @property
    def effective_return_documents(self) -> bool:
        """``return_documents``, else ``parameters.return_documents``, else false."""
        if self.return_documents is not None:
            return self.return_documents
        return bool(self.parameters and self.parameters.return_documents)

    def rank_args(self) -> RankArgs:
        return RankArgs(self.query, self.documents, self.effective_top_n)


def parse_request(body: Body) -> EnvelopeRequest:
    """Validate a request body; raises :class:`SchemaError` naming the field."""
    return parse_body(EnvelopeRequest, body)


def build_response(ranking: Ranking, request: EnvelopeRequest) -> dict[str, Any]:
    """``{"success", "code", "message", "data": {"results"}}``."""
    results = relevance_results(ranking, request.documents, request.effective_return_documents)
    return {"success": True, "code": "200", "message": "successful", "data": {"results": results}}


def build_error(error: ApiError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``{"success": false, "code", "message"}``."""
    return error.status, {"success": False, "code": str(error.status), "message": error.message}


def handle(request_body: Body, reranker: RerankerLike) -> dict[str, Any]:
    """Parse, rank and build; raises :class:`SchemaError` (turn it into a body with ``build_error``)."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request)


SHAPE: Shape[EnvelopeRequest] = Shape(
    "envelope", EnvelopeRequest, "documents", lambda ranking, request, served: build_response(ranking, request), build_error
)

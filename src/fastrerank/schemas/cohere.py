"""Cohere and Jina ``POST /v1/rerank``.

Request ``{"model"?, "query", "documents": [str | {"text"}], "top_n"?, "return_documents"?
(false)}``; documents given as ``{"text": ...}`` objects are ranked by their text and returned
whole (every field, as Cohere does). Response
``{"id", "results": [{"index", "relevance_score", "document"?: {"text"}}],
"meta": {"billed_units": {"search_units": 1}}}``. Errors are ``{"message"}``.

    >>> parse_request('{"query": "q", "documents": [{"text": "a"}, "b"]}').documents
    ['a', 'b']
"""

from __future__ import annotations

import uuid
from typing import Any

from fastrerank.results import Ranking
from fastrerank.schemas._common import (
    Body,
    DocumentObjects,
    Documents,
    NonEmptyText,
    RankArgs,
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

__all__ = ["SHAPE", "CohereRequest", "build_error", "build_response", "handle", "parse_request"]


class CohereRequest(DocumentObjects):
    model: Text | None = None
    query: NonEmptyText
    documents: Documents
    top_n: TopN | None = None
    return_documents: StrictBool = False

    @property
    def model_name(self) -> str | None:
        return self.model

    def rank_args(self) -> RankArgs:
        return RankArgs(self.query, self.documents, self.top_n)


def parse_request(body: Body) -> CohereRequest:
    """Validate a request body; raises :class:`SchemaError` naming the field."""
    return parse_body(CohereRequest, body)


def build_meta() -> dict[str, Any]:
    """Cohere's ``meta``: one search unit per request."""
    return {"billed_units": {"search_units": 1}}


def build_response(ranking: Ranking, request: CohereRequest, *, request_id: str | None = None) -> dict[str, Any]:
    """``{"id", "results", "meta"}``; ``request_id`` defaults to a random UUID."""
    return {
        "id": request_id or str(uuid.uuid4()),
        "results": relevance_results(
            ranking, request.documents, request.return_documents, request.document_objects
        ),
        "meta": build_meta(),
    }


def build_error(error: ApiError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``{"message"}``."""
    return error.status, {"message": error.message}


def handle(request_body: Body, reranker: RerankerLike, *, request_id: str | None = None) -> dict[str, Any]:
    """Parse, rank and build; raises :class:`SchemaError` (turn it into a body with ``build_error``)."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request, request_id=request_id)


SHAPE: Shape[CohereRequest] = Shape(
    "cohere",
    CohereRequest,
    "documents",
    lambda ranking, request, served: build_response(ranking, request, request_id=served.request_id),
    build_error,
)

"""The server's ``POST /v1/rerank``: one route for SiliconFlow, DMXAPI, Cohere and Jina clients.

The request is SiliconFlow's with Cohere's leniency: ``model`` may be left out, and documents
may be strings or ``{"text": ...}`` objects. The response is the superset of the four
responses, so each client finds the fields it reads:

- ``id``: a UUID (SiliconFlow, Cohere),
- ``results``: ``[{"index", "relevance_score", "document"?: {"text"}}]`` best first (all),
- ``tokens``: ``{"input_tokens", "output_tokens"}`` (SiliconFlow),
- ``usage``: ``{"prompt_tokens", "completion_tokens", "total_tokens"}`` (DMXAPI, Jina's
  ``total_tokens``),
- ``meta``: ``{"billed_units": {"search_units": 1}}`` (Cohere).

Errors are SiliconFlow's ``{"code", "message", "data": null}``, whose ``message`` is also what
Cohere clients read.

    >>> parse_request('{"query": "q", "documents": ["a", {"text": "b"}]}').documents
    ['a', 'b']
"""

from __future__ import annotations

import uuid
from typing import Any

from fastrerank.results import Ranking
from fastrerank.schemas._common import (
    Body,
    Documents,
    RerankerLike,
    Text,
    parse_body,
    relevance_results,
    run_rank,
)
from fastrerank.schemas.cohere import build_meta
from fastrerank.schemas.dmxapi import build_usage
from fastrerank.schemas.siliconflow import SiliconFlowRequest, build_error, build_tokens

__all__ = ["CombinedRequest", "build_error", "build_response", "handle", "parse_request"]


class CombinedRequest(SiliconFlowRequest):
    model: Text | None = None  # type: ignore[assignment]
    documents: Documents


def parse_request(body: Body) -> CombinedRequest:
    """Validate a request body; raises :class:`~fastrerank.errors.SchemaError` naming the field."""
    return parse_body(CombinedRequest, body)


def build_response(ranking: Ranking, request: CombinedRequest, *, request_id: str | None = None) -> dict[str, Any]:
    """``{"id", "results", "tokens", "usage", "meta"}``; ``request_id`` defaults to a random UUID."""
    return {
        "id": request_id or str(uuid.uuid4()),
        "results": relevance_results(ranking, request.documents, request.return_documents),
        "tokens": build_tokens(ranking),
        "usage": build_usage(ranking),
        "meta": build_meta(),
    }


def handle(request_body: Body, reranker: RerankerLike, *, request_id: str | None = None) -> dict[str, Any]:
    """Parse, rank and build; raises :class:`~fastrerank.errors.SchemaError`."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request, request_id=request_id)

"""The server's ``POST /v1/rerank``: one route for SiliconFlow, DMXAPI, Cohere and Jina clients.

The request is SiliconFlow's with Cohere's leniency: ``model`` may be left out, and documents
may be strings or ``{"text": ...}`` objects (returned whole, every field kept, as Cohere does).
The response is the superset of the four responses, so each client finds the fields it reads:

- ``id``: the request id, else a UUID (SiliconFlow, Cohere),
- ``model``: the model named by the request, else the one that ranked (Jina),
- ``results``: ``[{"index", "relevance_score", "document"?: {"text", ...}}]`` best first (all),
- ``tokens``: ``{"input_tokens", "output_tokens"}`` (SiliconFlow),
- ``usage``: ``{"prompt_tokens", "completion_tokens", "total_tokens"}`` (DMXAPI, Jina's
  ``total_tokens``),
- ``meta``: ``{"billed_units": {"search_units": 1}}`` (Cohere).

Errors are SiliconFlow's ``{"code", "message", "data": null}`` plus ``detail`` (the message
again): Cohere clients read ``message``, Jina clients (and FastAPI's convention) ``detail``.

    >>> parse_request('{"query": "q", "documents": ["a", {"text": "b"}]}').documents
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
    RerankerLike,
    Text,
    parse_body,
    relevance_results,
    run_rank,
)
from fastrerank.schemas._errors import ApiError
from fastrerank.schemas._shape import Shape
from fastrerank.schemas.cohere import build_meta
from fastrerank.schemas.dmxapi import build_usage
from fastrerank.schemas.siliconflow import SiliconFlowRequest, build_tokens, error_code

__all__ = ["SHAPE", "CombinedRequest", "build_error", "build_response", "handle", "parse_request"]


class CombinedRequest(SiliconFlowRequest, DocumentObjects):
    model: Text | None = None  # type: ignore[assignment]
    documents: Documents


def parse_request(body: Body) -> CombinedRequest:
    """Validate a request body; raises :class:`~fastrerank.errors.SchemaError` naming the field."""
    return parse_body(CombinedRequest, body)


def build_response(
    ranking: Ranking, request: CombinedRequest, *, request_id: str | None = None, model: str | None = None
) -> dict[str, Any]:
    """``{"id", "model"?, "results", "tokens", "usage", "meta"}``; ``request_id`` defaults to a
    random UUID; ``model`` is the request's, else the ``model`` given, else left out."""
    body: dict[str, Any] = {"id": request_id or str(uuid.uuid4())}
    if request.model is not None or model is not None:
        body["model"] = request.model if request.model is not None else model
    body["results"] = relevance_results(
        ranking, request.documents, request.return_documents, request.document_objects
    )
    body["tokens"] = build_tokens(ranking)
    body["usage"] = build_usage(ranking)
    body["meta"] = build_meta()
    return body


def build_error(error: ApiError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``{"code", "message", "detail", "data": null}``."""
    body = {"code": error_code(error), "message": error.message, "detail": error.message, "data": None}
    return error.status, body


def handle(
    request_body: Body, reranker: RerankerLike, *, request_id: str | None = None, model: str | None = None
) -> dict[str, Any]:
    """Parse, rank and build; raises :class:`~fastrerank.errors.SchemaError`."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request, request_id=request_id, model=model)


SHAPE: Shape[CombinedRequest] = Shape(
    "combined",
    CombinedRequest,
    "documents",
    lambda ranking, request, served: build_response(
        ranking, request, request_id=served.request_id, model=served.model
    ),
    build_error,
)

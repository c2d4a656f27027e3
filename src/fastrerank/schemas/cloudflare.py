"""Cloudflare Workers AI ``@cf/baai/bge-reranker-base``.

Request ``{"query", "contexts": [{"text"}], "top_k"?}``; the model's output is
``{"response": [{"id", "score"}]}`` best first, cut to ``top_k``. Over HTTP, Cloudflare's REST
API wraps it: ``{"result": ..., "success": true, "errors": [], "messages": []}``, and an error is
``{"result": null, "success": false, "errors": [{"code", "message"}], "messages": []}``.

Each context's text has ``minLength: 1`` in Cloudflare's schema, so an empty text is a 400 on
this API (the library itself scores empty documents); so is an empty ``contexts`` list, as on
every other API. ``SHAPE`` answers with the model's output, ``REST`` with the REST envelope.

    >>> parse_request('{"query": "q", "contexts": [{"text": "a"}], "top_k": 1}').top_k
    1
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, FailFast, Field

from fastrerank.results import Ranking
from fastrerank.schemas._common import (
    Body,
    NonEmptyText,
    RankArgs,
    RequestModel,
    RerankerLike,
    TopN,
    parse_body,
    run_rank,
)
from fastrerank.schemas._errors import ApiError, ErrorKind, error_kind
from fastrerank.schemas._shape import Shape

__all__ = ["REST", "SHAPE", "CloudflareRequest", "build_envelope", "build_error", "build_response", "handle", "parse_request"]

MODEL = "@cf/baai/bge-reranker-base"

# Cloudflare's codes: 5006 input does not match the schema, 5007 no such model,
# 10000 authentication error, 3006 request too large, 3040 capacity exceeded.
_CODES = {
    ErrorKind.UNAUTHORIZED: 10000,
    ErrorKind.TOO_LARGE: 3006,
    ErrorKind.OVERLOADED: 3040,
    ErrorKind.UNAVAILABLE: 3040,
}


class Context(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    text: NonEmptyText


class CloudflareRequest(RequestModel):
    query: NonEmptyText
    contexts: Annotated[list[Context], FailFast(), Field(min_length=1)]
    top_k: TopN | None = None

    def rank_args(self) -> RankArgs:
        return RankArgs(self.query, [context.text for context in self.contexts], self.top_k)


def parse_request(body: Body) -> CloudflareRequest:
    """Validate a request body; raises :class:`SchemaError` naming the field."""
    return parse_body(CloudflareRequest, body)


def build_response(ranking: Ranking, request: CloudflareRequest, *, envelope: bool = False) -> dict[str, Any]:
    """``{"response": [{"id", "score"}]}``; with ``envelope=True`` wrapped as the REST API does."""
    result = {"response": [{"id": item.index, "score": item.score} for item in ranking]}
    return build_envelope(result) if envelope else result


def build_envelope(result: dict[str, Any]) -> dict[str, Any]:
    """The REST API's success envelope around a model's output."""
    return {"result": result, "success": True, "errors": [], "messages": []}


def build_error(error: ApiError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the REST API's error envelope."""
    code = 5007 if error.field == "model" else _CODES.get(error_kind(error), 5006)
    body = {"result": None, "success": False, "errors": [{"code": code, "message": error.message}], "messages": []}
    return error.status, body


def handle(request_body: Body, reranker: RerankerLike, *, envelope: bool = False) -> dict[str, Any]:
    """Parse, rank and build; raises :class:`SchemaError` (turn it into a body with ``build_error``)."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request, envelope=envelope)


SHAPE: Shape[CloudflareRequest] = Shape(
    "cloudflare", CloudflareRequest, "contexts",
    lambda ranking, request, served: build_response(ranking, request), build_error,
)
REST: Shape[CloudflareRequest] = Shape(
    "cloudflare-rest", CloudflareRequest, "contexts",
    lambda ranking, request, served: build_response(ranking, request, envelope=True), build_error,
)

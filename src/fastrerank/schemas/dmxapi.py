"""DMXAPI ``POST /v1/rerank``.

The request is SiliconFlow's (see :mod:`fastrerank.schemas.siliconflow`); the response is
``{"results": [{"document"?: {"text"}, "index", "relevance_score"}], "usage": {"prompt_tokens",
"completion_tokens", "total_tokens"}}`` (OpenAI-style usage: prompt = total = tokens run through
the model, completion 0). Errors use SiliconFlow's ``{"code", "message", "data": null}``.

    >>> parse_request('{"model": "m", "query": "q", "documents": ["a"], "top_n": 3}').top_n
    3
"""

from __future__ import annotations

from typing import Any

from fastrerank.results import Ranking
from fastrerank.schemas._common import Body, RerankerLike, relevance_results, run_rank
from fastrerank.schemas._shape import Shape
from fastrerank.schemas.siliconflow import (
    SiliconFlowRequest,
    build_error,
    parse_request,
)

__all__ = ["SHAPE", "SiliconFlowRequest", "build_error", "build_response", "build_usage", "handle", "parse_request"]


def build_usage(ranking: Ranking) -> dict[str, int]:
    """OpenAI-style usage for a ranking."""
    return {"prompt_tokens": ranking.tokens, "completion_tokens": 0, "total_tokens": ranking.tokens}


def build_response(ranking: Ranking, request: SiliconFlowRequest) -> dict[str, Any]:
    """``{"results", "usage"}``."""
    return {
        "results": relevance_results(ranking, request.documents, request.return_documents),
        "usage": build_usage(ranking),
    }


def handle(request_body: Body, reranker: RerankerLike) -> dict[str, Any]:
    """Parse, rank and build; raises :class:`~fastrerank.errors.SchemaError`."""
    request = parse_request(request_body)
    return build_response(run_rank(reranker, request.rank_args()), request)


SHAPE: Shape[SiliconFlowRequest] = Shape(
    "dmxapi", SiliconFlowRequest, "documents", lambda ranking, request, served: build_response(ranking, request), build_error
)

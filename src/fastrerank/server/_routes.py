"""The rerank routes: which API shape answers on which path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fastrerank.results import Ranking
from fastrerank.schemas import RequestModel, cloudflare, combined, envelope, tei

__all__ = ["CLOUDFLARE_MODEL", "ROUTES", "RerankRoute"]

CLOUDFLARE_MODEL = "@cf/baai/bge-reranker-base"


@dataclass(frozen=True)
class RerankRoute:
    """A POST route answered by one API shape module.

    ``docs_field`` names the documents in that API (for the per-request cap message);
    ``model_param`` is the path parameter naming the model, ``fixed_model`` the model a path
    names by itself; without either the request's own ``model`` field picks it, and an API
    with no such field (``names_model=False``, TEI) gets the first model.
    """

    path: str
    shape: ModuleType
    request_model: type[RequestModel]
    docs_field: str
    summary: str
    model_param: str | None = None
    fixed_model: str | None = None
    names_model: bool = True
    build: Callable[[Ranking, Any], Any] | None = None

    def respond(self, ranking: Ranking, request: Any) -> Any:
        """The response body for a ranking."""
        builder = self.build or self.shape.build_response
        return builder(ranking, request)


def _cloudflare_rest(ranking: Ranking, request: Any) -> Any:
    return cloudflare.build_response(ranking, request, envelope=True)


ROUTES = (
    RerankRoute(
        "/v1/rerank",
        combined,
        combined.CombinedRequest,
        "documents",
        "SiliconFlow, DMXAPI, Cohere and Jina rerank (one superset response)",
    ),
    RerankRoute(
        "/v2/rerank",
        combined,
        combined.CombinedRequest,
        "documents",
        "Cohere v2 rerank (same request and response as /v1/rerank)",
    ),
    RerankRoute(
        "/rerank",
        tei,
        tei.TeiRequest,
        "texts",
        "Hugging Face text-embeddings-inference rerank",
        names_model=False,
    ),
    RerankRoute(
        "/api/v1/rerank",
        envelope,
        envelope.EnvelopeRequest,
        "documents",
        "Generic cloud rerank with a response envelope",
    ),
    RerankRoute(
        f"/ai/run/{CLOUDFLARE_MODEL}",
        cloudflare,
        cloudflare.CloudflareRequest,
        "contexts",
        "Cloudflare Workers AI bge-reranker-base",
        fixed_model=CLOUDFLARE_MODEL,
        build=_cloudflare_rest,
    ),
    RerankRoute(
        "/client/v4/accounts/{account}/ai/run/{model:path}",
        cloudflare,
        cloudflare.CloudflareRequest,
        "contexts",
        "Cloudflare Workers AI REST API",
        model_param="model",
        build=_cloudflare_rest,
    ),
)

"""The rerank routes: a path and the API shape that answers on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastrerank.schemas import Shape, cloudflare, combined, envelope, tei

__all__ = ["CLOUDFLARE_MODEL", "ROUTES", "RerankRoute"]

CLOUDFLARE_MODEL = "@cf/baai/bge-reranker-base"


@dataclass(frozen=True)
class RerankRoute:
    """A POST route: ``path`` answered by ``shape``.

    The model is picked by the path's ``{model}`` parameter when it has one, else by ``model``
    (a path that names a model by itself), else by the request's own ``model`` field; a shape
    whose requests name no model (TEI) gets the first model.
    """

    path: str
    shape: Shape[Any]
    summary: str
    model: str | None = None


ROUTES = (
    RerankRoute("/v1/rerank", combined.SHAPE, "SiliconFlow, DMXAPI, Cohere and Jina rerank (one superset response)"),
    RerankRoute("/v2/rerank", combined.SHAPE, "Cohere v2 rerank (same request and response as /v1/rerank)"),
    RerankRoute("/rerank", tei.SHAPE, "Hugging Face text-embeddings-inference rerank"),
    RerankRoute("/api/v1/rerank", envelope.SHAPE, "Generic cloud rerank with a response envelope"),
    RerankRoute(
        f"/ai/run/{CLOUDFLARE_MODEL}", cloudflare.REST, "Cloudflare Workers AI bge-reranker-base", model=CLOUDFLARE_MODEL
    ),
    RerankRoute("/client/v4/accounts/{account}/ai/run/{model:path}", cloudflare.REST, "Cloudflare Workers AI REST API"),
)

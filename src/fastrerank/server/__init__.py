"""An HTTP server speaking the rerank APIs of SiliconFlow, DMXAPI, Cohere, Jina, TEI, Cloudflare
Workers AI and the generic envelope API, over in-process rerankers.

Needs the ``server`` extra (``pip install 'fastrerank[server]'``: starlette, uvicorn,
pydantic). Routes:

| route | API |
| --- | --- |
| ``POST /v1/rerank`` | SiliconFlow / DMXAPI / Cohere / Jina |
| ``POST /v2/rerank`` | Cohere v2 (same as ``/v1/rerank``) |
| ``POST /rerank`` | TEI |
| ``POST /api/v1/rerank`` | envelope API |
| ``POST /ai/run/@cf/baai/bge-reranker-base`` | Cloudflare (REST envelope) |
| ``POST /client/v4/accounts/{account}/ai/run/{model}`` | Cloudflare REST API |
| ``GET /health``, ``GET /openapi.json`` | liveness (names only), OpenAPI 3.1 |
| ``GET /info``, ``GET /v1/models``, ``GET /metrics`` | operators (the API key when one is set) |

Every error comes back in the route's API shape, a wrong method included; bodies are parsed as
JSON whatever their Content-Type. ``X-Request-Id`` comes back on every response, and each request
is logged on ``fastrerank.server.access``.
"""

from __future__ import annotations

from fastrerank.errors import MissingDependencyError

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        f"fastrerank.server needs {err.name}: pip install 'fastrerank[server]'"
    ) from err

from fastrerank.server._app import create_app
from fastrerank.server._serve import serve

__all__ = ["create_app", "serve"]

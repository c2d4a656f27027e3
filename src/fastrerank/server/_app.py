"""The ASGI application: the rerank routes, the operator routes, the access log around them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fastrerank import __version__
from fastrerank.errors import InvalidInputError
from fastrerank.schemas import RerankerLike
from fastrerank.server._access import AccessLog
from fastrerank.server._admission import Admission
from fastrerank.server._http import BodyBudget, authorized
from fastrerank.server._metrics import Metrics, make_metrics
from fastrerank.server._openapi import openapi_document
from fastrerank.server._rerank import Limits, RerankEndpoints
from fastrerank.server._routes import ROUTES

__all__ = ["create_app"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
# How long a shutdown waits for the answers of requests cancelled past the graceful timeout.
_LAST_ANSWERS_S = 2.0




def create_app(
    rerankers: Mapping[str, RerankerLike],
    *,
    api_key: str | None = None,
    max_body_bytes: int = 2_000_000,
    max_documents: int = 1000,
    max_concurrency: int = 4,
    max_queue: int | None = None,
    queue_timeout: float = 30.0,
    body_timeout: float = 30.0,
    max_body_bytes_in_flight: int | None = None,
) -> AccessLog:
    """An ASGI app serving ``rerankers`` (name -> reranker) on every API shape's route.

    With one reranker any ``model`` value is accepted; with several, ``model`` picks one by
    name (TEI requests, which carry no model, get the first). ``max_queue`` (default
    ``max_concurrency``) requests may wait for one of the ``max_concurrency`` slots; more are
    refused with 429, and one that waits over ``queue_timeout`` seconds gets 503. A body must
    arrive within ``body_timeout`` seconds (else 408); the bodies of all requests in flight
    together may hold ``max_body_bytes_in_flight`` bytes (default 32 x ``max_body_bytes``;
    past it, 429 at once).

        >>> app = create_app({"tiny": reranker})  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    if not rerankers:
        raise InvalidInputError("rerankers must name at least one reranker")
    in_flight = 32 * max_body_bytes if max_body_bytes_in_flight is None else max_body_bytes_in_flight
    for name, value in (
        ("max_body_bytes", max_body_bytes),
        ("max_documents", max_documents),
        ("max_concurrency", max_concurrency),
        ("max_body_bytes_in_flight", in_flight),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    if in_flight < max_body_bytes:
        raise InvalidInputError(
            f"max_body_bytes_in_flight must be >= max_body_bytes ({max_body_bytes}), got {in_flight}"
        )
    queue = max_concurrency if max_queue is None else max_queue
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
        raise InvalidInputError(f"max_queue must be an int >= 0, got {max_queue!r}")
    for name, seconds in (("queue_timeout", queue_timeout), ("body_timeout", body_timeout)):
        if not seconds > 0:
            raise InvalidInputError(f"{name} must be > 0 seconds, got {seconds!r}")
    models = dict(rerankers)
    admission = Admission(max_concurrency, queue, queue_timeout)
    budget = BodyBudget(in_flight)
    metrics = make_metrics(
        queue_depth=lambda: admission.waiting, in_flight=lambda: admission.running, body_bytes=lambda: budget.held
    )
    rerank = RerankEndpoints(models, admission, budget, Limits(api_key, max_body_bytes, max_documents, body_timeout), metrics)
    info = {
        "version": __version__,
        "models": [_describe(name, reranker) for name, reranker in models.items()],
        "limits": {
            "max_body_bytes": max_body_bytes,
            "max_body_bytes_in_flight": in_flight,
            "body_timeout": body_timeout,
            "max_documents": max_documents,
            "max_concurrency": max_concurrency,
            "max_queue": queue,
            "queue_timeout": queue_timeout,
        },
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # Requests cancelled past the graceful timeout answer 503 now: let those answers go out.
        deadline = time.monotonic() + _LAST_ANSWERS_S
        while rerank.active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        admission.shutdown()

    def guarded(payload: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not authorized(request, api_key):
                return JSONResponse({"message": "missing or invalid API key", "detail": "missing or invalid API key"}, status_code=401)
            return JSONResponse(payload() if callable(payload) else payload)

        return endpoint

    async def health(request: Request) -> Response:
        # Names only, never a model's path; the same for everyone (load balancers have no key).
        return JSONResponse({"status": "ok", "models": list(models)})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(__version__))

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/info", guarded(info), methods=["GET"]),
        Route("/v1/models", guarded(_model_list(models)), methods=["GET"]),
    ]
    if isinstance(metrics, Metrics):
        routes.append(Route("/metrics", _metrics_endpoint(metrics, api_key), methods=["GET"]))
    # Every method reaches the rerank endpoint, which answers a wrong one in the route's shape.
    routes += [Route(route.path, rerank.endpoint(route), methods=_METHODS) for route in ROUTES]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )
    return AccessLog(app, metrics)


def _describe(name: str, reranker: RerankerLike) -> dict[str, Any]:
    """What ``/info`` says of a model: its name and, where the reranker has them, its settings."""
    described: dict[str, Any] = {"name": name}
    for attribute in ("max_length", "compute_type", "device"):
        value = getattr(reranker, attribute, None)
        if isinstance(value, str | int):
            described[attribute] = value
    return described


def _model_list(models: Mapping[str, RerankerLike]) -> dict[str, Any]:
    """OpenAI's ``GET /v1/models`` list."""
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "fastrerank"} for name in models]}


def _metrics_endpoint(metrics: Metrics, api_key: str | None) -> Any:
    async def endpoint(request: Request) -> Response:
        if not authorized(request, api_key):
            return Response("missing or invalid API key\n", status_code=401, media_type="text/plain")
        body, content_type = metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    return endpoint


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"message": exc.detail, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

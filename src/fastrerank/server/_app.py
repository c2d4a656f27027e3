"""The ASGI application: routes -> API shape -> admission -> reranker."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fastrerank.errors import (
    InvalidInputError,
    ModelClosedError,
    SchemaError,
)
from fastrerank.schemas import RerankerLike
from fastrerank.schemas._common import run_rank
from fastrerank.server._admission import Admission, ClientGone
from fastrerank.server._http import check_api_key, read_body
from fastrerank.server._openapi import openapi_document
from fastrerank.server._routes import ROUTES, RerankRoute

__all__ = ["create_app"]

logger = logging.getLogger("fastrerank.server")


def _version() -> str:
    try:
        return importlib.metadata.version("fastrerank")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0+unknown"


def create_app(
    rerankers: Mapping[str, RerankerLike],
    *,
    api_key: str | None = None,
    max_body_bytes: int = 2_000_000,
    max_documents: int = 1000,
    max_concurrency: int = 4,
    max_queue: int | None = None,
    queue_timeout: float = 30.0,
) -> Starlette:
    """An ASGI app serving ``rerankers`` (name -> reranker) on every API shape's route.

    With one reranker any ``model`` value is accepted; with several, ``model`` picks one by
    name (TEI requests, which carry no model, get the first). ``max_queue`` (default
    ``max_concurrency``) requests may wait for one of the ``max_concurrency`` slots; more are
    refused with 429, and one that waits over ``queue_timeout`` seconds gets 503.

        >>> app = create_app({"tiny": reranker})  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    if not rerankers:
        raise InvalidInputError("rerankers must name at least one reranker")
    for name, value in (
        ("max_body_bytes", max_body_bytes),
        ("max_documents", max_documents),
        ("max_concurrency", max_concurrency),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    queue = max_concurrency if max_queue is None else max_queue
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
        raise InvalidInputError(f"max_queue must be an int >= 0, got {max_queue!r}")
    if not queue_timeout > 0:
        raise InvalidInputError(f"queue_timeout must be > 0 seconds, got {queue_timeout!r}")
    models = dict(rerankers)
    admission = Admission(max_concurrency, queue, queue_timeout)
    limits = _Limits(api_key, max_body_bytes, max_documents)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        admission.shutdown()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(models)})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(_version()))

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    routes += [
        Route(route.path, _endpoint(route, models, admission, limits), methods=["POST"])
        for route in ROUTES
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )


@dataclass(frozen=True)
class _Limits:
    api_key: str | None
    max_body_bytes: int
    max_documents: int


def _endpoint(
    route: RerankRoute,
    models: dict[str, RerankerLike],
    admission: Admission,
    limits: _Limits,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await _rerank(request, route, models, admission, limits))
        except SchemaError as err:
            return _error(route, err)
        except (ClientGone, ClientDisconnect):
            return Response(status_code=499)  # nobody is listening
        except ModelClosedError as err:
            logger.warning("%s: %s", route.path, err)
            return _error(route, SchemaError("the model is closed; the server is shutting down", status=503))
        except Exception:  # the server's edge: log it, answer in the API's shape, no traceback
            logger.exception("%s: ranking failed", route.path)
            return _error(route, SchemaError("internal error while ranking", status=500))

    return endpoint


async def _rerank(
    request: Request,
    route: RerankRoute,
    models: dict[str, RerankerLike],
    admission: Admission,
    limits: _Limits,
) -> Any:
    check_api_key(request, limits.api_key)
    parsed = route.shape.parse_request(await read_body(request, limits.max_body_bytes))
    args = parsed.rank_args()
    if len(args.docs) > limits.max_documents:
        raise SchemaError(
            f"{route.docs_field}: at most {limits.max_documents} documents per request, "
            f"got {len(args.docs)}",
            field=route.docs_field,
            status=413,
        )
    if route.model_param is not None:
        name: str | None = request.path_params[route.model_param]
    else:
        name = route.fixed_model or parsed.model_name
    reranker = _pick(models, name, required=route.names_model)
    ranking = await admission.run(lambda: run_rank(reranker, args), request.is_disconnected)
    return route.respond(ranking, parsed)


def _pick(models: dict[str, RerankerLike], name: str | None, *, required: bool) -> RerankerLike:
    """One model: always it. Several: the one named (TEI, which names none: the first)."""
    if len(models) == 1 or (name is None and not required):
        return next(iter(models.values()))
    accepted = ", ".join(models)
    if name is None:
        raise SchemaError(f"model is required: this server has several (accepted: {accepted})", field="model")
    if name not in models:
        raise SchemaError(f"model {name!r} is not served here (accepted: {accepted})", field="model")
    return models[name]


def _error(route: RerankRoute, error: SchemaError) -> Response:
    status, body = route.shape.build_error(error)
    return JSONResponse(body, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"message": exc.detail}, status_code=exc.status_code, headers=exc.headers)

"""One rerank request: key -> bounded body -> parse (off the loop) -> admission -> shape.

Everything a request can fail with is answered in its route's API shape: a body that does not
fit is a :class:`~fastrerank.errors.SchemaError`, every other refusal a
:class:`~fastrerank.schemas.ServiceError` of one kind, each shape mapping both once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from fastrerank.errors import ModelClosedError, SchemaError, describe_value
from fastrerank.results import Ranking
from fastrerank.schemas import ApiError, ErrorKind, RerankerLike, Served, ServiceError
from fastrerank.schemas._common import run_rank
from fastrerank.server._access import RECORD
from fastrerank.server._admission import Admission, ClientGone
from fastrerank.server._http import BODY_READ, BodyBudget, check_api_key, read_body, wait_disconnect
from fastrerank.server._metrics import Metrics, _NoMetrics
from fastrerank.server._routes import RerankRoute

__all__ = ["Limits", "RerankEndpoints"]

logger = logging.getLogger("fastrerank.server")

_PARSE_ON_LOOP_BYTES = 16 * 1024


@dataclass(frozen=True)
class Limits:
    """The per-request limits of an app."""

    api_key: str | None
    max_body_bytes: int
    max_documents: int
    body_timeout: float


class RerankEndpoints:
    """The rerank endpoints of one app and what they share; counts the requests being answered
    so that a shutdown can let the last answers go out."""

    def __init__(self, models: dict[str, RerankerLike], admission: Admission, budget: BodyBudget,
                 limits: Limits, metrics: Metrics | _NoMetrics) -> None:
        self.models = models
        self.admission = admission
        self.budget = budget
        self.limits = limits
        self.metrics = metrics
        self.active = 0

    def endpoint(self, route: RerankRoute) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint answering ``route`` (every method: a wrong one gets the shape's 405)."""

        async def endpoint(request: Request) -> Response:
            self.active += 1
            try:
                if request.method != "POST":
                    error = ServiceError(ErrorKind.METHOD_NOT_ALLOWED, f"method {request.method} not allowed: use POST")
                    return error_response(route, error, headers={"Allow": "POST"})
                async with self.budget.account() as reserve:
                    return JSONResponse(await self._rerank(request, route, reserve))
            except (SchemaError, ServiceError) as err:
                if request.scope.get("state", {}).get(BODY_READ):
                    return error_response(route, err)
                return error_response(route, err, headers={"Connection": "close"})
            except (ClientGone, ClientDisconnect):
                return Response(status_code=499)  # nobody is listening
            except ModelClosedError as err:
                logger.warning("%s: %s", route.path, err)
                closed = ServiceError(ErrorKind.UNAVAILABLE, "the model is closed; the server is shutting down")
                return error_response(route, closed)
            except asyncio.CancelledError:
                # uvicorn cancels what is still running past the graceful shutdown timeout:
                # answer that in the route's shape instead of a plain-text 500 and a traceback.
                stopped = ServiceError(ErrorKind.UNAVAILABLE, "the server is shutting down; the ranking did not finish")
                return error_response(route, stopped)
            except Exception:  # the server's edge: log it, answer in the API's shape, no traceback
                logger.exception("%s: ranking failed", route.path)
                return error_response(route, ServiceError(ErrorKind.INTERNAL, "internal error while ranking"))
            finally:
                self.active -= 1

        return endpoint

    async def _rerank(self, request: Request, route: RerankRoute, reserve: Callable[[int], None]) -> Any:
        limits = self.limits
        check_api_key(request, limits.api_key)
        body = await read_body(request, limit=limits.max_body_bytes, timeout=limits.body_timeout, reserve=reserve)
        # Parsing (and explaining a refusal) costs time in the body's size: a small body is
        # parsed here (bounded work, cheaper than a thread hop), a larger one never on the loop.
        if len(body) <= _PARSE_ON_LOOP_BYTES:
            parsed = route.shape.parse_request(body)
        else:
            parsed = await asyncio.get_running_loop().run_in_executor(None, route.shape.parse_request, body)
        args = parsed.rank_args()
        docs_field = route.shape.docs_field
        if len(args.documents) > limits.max_documents:
            raise ServiceError(
                ErrorKind.TOO_LARGE,
                f"{docs_field}: at most {limits.max_documents} documents per request, got {len(args.documents)}",
                field=docs_field,
            )
        name = request.path_params.get("model") or route.model or parsed.model_name
        name, reranker = self._pick(name, required=route.shape.names_model)
        record = request.scope.get("state", {}).get(RECORD, {})
        record.update(model=name, documents=len(args.documents))

        def rank() -> tuple[Ranking, float]:
            started = time.perf_counter()
            return run_rank(reranker, args), time.perf_counter() - started

        disconnected = lambda: wait_disconnect(request.receive)  # noqa: E731
        ranking, seconds = await self.admission.run(rank, disconnected)
        self.metrics.observe_ranking(name, seconds, len(args.documents), ranking.tokens)
        record["tokens"] = ranking.tokens
        served = Served(request_id=request.scope.get("state", {}).get("request_id"), model=name)
        return route.shape.build_response(ranking, parsed, served)

    def _pick(self, name: str | None, *, required: bool) -> tuple[str, RerankerLike]:
        """One model: always it. Several: the one named (TEI, which names none: the first)."""
        models = self.models
        if len(models) == 1 or (name is None and not required):
            return next(iter(models.items()))
        accepted = ", ".join(models)
        if name is None:
            raise SchemaError(f"model is required: this server has several (accepted: {accepted})", field="model")
        if name not in models:
            raise SchemaError(f"model {describe_value(name)} is not served here (accepted: {accepted})", field="model")
        return name, models[name]


def error_response(route: RerankRoute, error: ApiError, headers: dict[str, str] | None = None) -> Response:
    """``error`` in the route's shape."""
    status, body = route.shape.build_error(error)
    return JSONResponse(body, status_code=status, headers=headers)

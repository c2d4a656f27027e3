"""One adapter interface for every API shape: parse a request, build a response, build an error.

Each API module offers its shape as ``SHAPE`` (Cloudflare also ``REST``, its HTTP envelope), so
a server route is only a path and a shape::

    >>> from fastrerank.schemas import tei
    >>> tei.SHAPE.build_error(ServiceError(ErrorKind.OVERLOADED, "busy"))
    (429, {'error': 'busy', 'error_type': 'overloaded'})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastrerank.results import Ranking
from fastrerank.schemas._common import Body, RequestModel, parse_body
from fastrerank.schemas._errors import ApiError, ErrorKind, ServiceError  # noqa: F401 (the doctest)

__all__ = ["Served", "Shape"]

R = TypeVar("R", bound=RequestModel)


@dataclass(frozen=True)
class Served:
    """What the server knows about a request besides its body: its id and the name of the
    model that ranked it (both optional; a shape leaves out what it is not given)."""

    request_id: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Shape(Generic[R]):
    """An API shape: its request model, where its documents are, and its three functions.

    ``docs_field`` names the documents in that API (for messages); ``names_model`` is false for
    an API whose requests name no model (TEI).
    """

    name: str
    request_model: type[R]
    docs_field: str
    respond: Callable[[Ranking, R, Served], Any]
    error: Callable[[ApiError], tuple[int, Any]]
    names_model: bool = True

    def parse_request(self, body: Body) -> R:
        """Validate a body; raises :class:`~fastrerank.errors.SchemaError` naming the field."""
        return parse_body(self.request_model, body)

    def build_response(self, ranking: Ranking, request: R, served: Served = Served()) -> Any:
        """The response body for a ranking of ``request``."""
        return self.respond(ranking, request, served)

    def build_error(self, error: ApiError) -> tuple[int, Any]:
        """The HTTP status and the error body in this API's shape."""
        return self.error(error)

"""Request and response shapes of the hosted rerank APIs fastrerank can stand in for.

One module per API, each with the same four functions (the layout of safetensors' per-framework
modules) and its adapter, ``SHAPE`` (a :class:`Shape`: ``parse_request``, ``build_response``,
``build_error`` with one signature for every API, so a server route is a path and a shape):

- ``parse_request(body)``: JSON text, bytes or a decoded object -> a frozen pydantic request
  model, or :class:`~fastrerank.errors.SchemaError` naming the field;
- ``build_response(ranking, request, ...)``: a :class:`~fastrerank.results.Ranking` -> the API's
  JSON response;
- ``build_error(error)``: a :class:`~fastrerank.errors.SchemaError` (a body that does not fit)
  or a :class:`ServiceError` (a refusal of one :class:`ErrorKind`: unauthorized, too large,
  overloaded, ...) -> ``(status, body)`` in the API's own error shape;
- ``handle(body, reranker)``: parse, rank, build; raises ``SchemaError``.

| module | API |
| --- | --- |
| ``cloudflare`` | Cloudflare Workers AI ``@cf/baai/bge-reranker-base`` |
| ``siliconflow`` | SiliconFlow ``/v1/rerank`` |
| ``dmxapi`` | DMXAPI ``/v1/rerank`` |
| ``cohere`` | Cohere and Jina ``/v1/rerank`` |
| ``envelope`` | the generic cloud ``/api/v1/rerank`` with a success envelope |
| ``tei`` | Hugging Face text-embeddings-inference ``/rerank`` |
| ``combined`` | the server's ``/v1/rerank``: SiliconFlow + DMXAPI + Cohere + Jina in one |

Validation is strict about numbers (``true``, ``2.0`` and ``"3"`` are not integers; NaN and
Infinity are not JSON), rejects lone surrogates, keeps the last of duplicate keys and ignores
unknown fields. These modules need pydantic (the ``server`` extra) and import neither
ctranslate2 nor tokenizers::

    >>> from fastrerank.schemas import cohere
    >>> class Fake:
    ...     def rank(self, query, documents, top_n=None, **options):
    ...         from fastrerank.results import RankedDocument, Ranking
    ...         return Ranking((RankedDocument(1, 0.9), RankedDocument(0, 0.1)), tokens=12)
    >>> cohere.handle({"query": "q", "documents": ["a", "b"]}, Fake(), request_id="r")["results"]
    [{'index': 1, 'relevance_score': 0.9}, {'index': 0, 'relevance_score': 0.1}]
"""

from __future__ import annotations

from fastrerank.schemas._common import RankArgs, RequestModel, RerankerLike
from fastrerank.schemas._errors import ApiError, ErrorKind, ServiceError, error_kind
from fastrerank.schemas._shape import Served, Shape

__all__ = [
    "ApiError",
    "ErrorKind",
    "RankArgs",
    "RequestModel",
    "RerankerLike",
    "Served",
    "ServiceError",
    "Shape",
    "error_kind",
]

"""Pieces every API shape shares: strict field types, JSON parsing, error mapping, the rank call.

The API modules (``cloudflare``, ``siliconflow``, ...) only describe their own fields and
their own response and error layout; how a body becomes a request model, how a pydantic
error becomes a :class:`~fastrerank.errors.SchemaError` naming the field, and how engine
errors become a 400 all live here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

from fastrerank._validation import DEFAULT_MAX_CHUNKS_PER_DOC as DEFAULT_MAX_CHUNKS
from fastrerank._validation import DEFAULT_OVERLAP_TOKENS, MAX_OVERLAP_TOKENS
from fastrerank.errors import (
    InvalidInputError,
    InvalidTypeError,
    MissingDependencyError,
    SchemaError,
)
from fastrerank.results import Ranking

try:
    from pydantic import (
        BaseModel,
        BeforeValidator,
        ConfigDict,
        FailFast,
        Field,
        PrivateAttr,
        Strict,
        ValidationError,
        ValidatorFunctionWrapHandler,
        model_validator,
    )

    from fastrerank.schemas._json import loads_object, show_json
except ImportError as err:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "fastrerank.schemas needs pydantic: pip install 'fastrerank[server]'"
    ) from err

__all__ = [
    "DEFAULT_MAX_CHUNKS",
    "DEFAULT_OVERLAP_TOKENS",
    "MAX_OVERLAP_TOKENS",
    "Body",
    "DocumentObjects",
    "Documents",
    "MaxChunks",
    "NonEmptyText",
    "OverlapTokens",
    "RankArgs",
    "RequestModel",
    "RerankerLike",
    "StrictBool",
    "StringDocuments",
    "Text",
    "TopN",
    "parse_body",
    "relevance_results",
    "run_rank",
]

logger = logging.getLogger("fastrerank.schemas")

Body = str | bytes | bytearray | Mapping[str, Any]
"""What ``parse_request`` accepts: raw JSON text or bytes, or an already decoded object."""



class RerankerLike(Protocol):
    """What the schemas and the server need from a reranker: :meth:`fastrerank.Reranker.rank`."""

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS,
        return_documents: bool = False,
        raw: bool = False,
    ) -> Ranking: ...


def _unwrap_text(value: object) -> object:
    """Cohere/Jina send documents as strings or ``{"text": ...}`` objects: keep the text."""
    if isinstance(value, Mapping) and "text" in value:
        return value["text"]
    return value


# Strict: ``true``, ``2.0`` and ``"3"`` are not integers; ``1`` is not a boolean.
# FailFast on lists: a list stops at its first bad item, so a body of a million wrong items
# costs one error, not a million error objects.
TopN = Annotated[int, Strict(), Field(ge=1)]
StrictBool = Annotated[bool, Strict()]
OverlapTokens = Annotated[int, Strict(), Field(ge=0, le=MAX_OVERLAP_TOKENS)]
MaxChunks = Annotated[int, Strict(), Field(ge=1)]
NonEmptyText = Annotated[str, Strict(), Field(min_length=1)]
Text = Annotated[str, Strict()]
Documents = Annotated[
    list[Annotated[str, Strict(), BeforeValidator(_unwrap_text)]], FailFast(), Field(min_length=1)
]
"""Documents as strings, or ``{"text": ...}`` objects unwrapped to their text."""
StringDocuments = Annotated[list[Text], FailFast(), Field(min_length=1)]
"""Documents as strings only (SiliconFlow: "only string lists are supported")."""


@dataclass(frozen=True)
class RankArgs:
    """One call of ``rank``, as a request asks for it."""

    query: str
    documents: Sequence[str]
    top_n: int | None = None
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS
    raw: bool = False


class RequestModel(BaseModel):
    """Base of every request model: unknown fields are ignored, instances are frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @property
    def model_name(self) -> str | None:
        """The model the request names, if its API has such a field."""
        return None

    def rank_args(self) -> RankArgs:
        """The ``rank`` call this request asks for."""
        raise NotImplementedError


class DocumentObjects(RequestModel):
    """A request whose ``documents`` may be ``{"text", ...}`` objects: the objects are kept as
    sent, so a response can return them whole (Cohere returns a document's other fields, such
    as ``title``, with it)."""

    _document_objects: tuple[Mapping[str, Any] | None, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _keep_document_objects(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        request = handler(data)
        documents = data.get("documents") if isinstance(data, Mapping) else None
        if isinstance(request, DocumentObjects) and isinstance(documents, list):
            request._document_objects = tuple(
                dict(item) if isinstance(item, Mapping) else None for item in documents
            )
        return request

    @property
    def document_objects(self) -> tuple[Mapping[str, Any] | None, ...]:
        """Per document, the object it was sent as (``None`` for a plain string)."""
        return self._document_objects


M = TypeVar("M", bound=RequestModel)


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    return ".".join(str(part) for part in loc) or None


def _schema_error(err: ValidationError) -> SchemaError:
    first = err.errors(include_url=False)[0]
    field = _field_path(first["loc"])
    if first["type"] == "missing":
        return SchemaError(f"{field} is required", field=field)
    where = field or "body"
    message = f"{where}: {first['msg']}, got {show_json(first['input'])}"
    return SchemaError(message, field=field)


def parse_body(model: type[M], body: Body) -> M:
    """Decode ``body`` as JSON (whatever its content type) and validate it against ``model``.

    NaN, Infinity, lone surrogates and malformed JSON are a 400; duplicate keys keep the last
    value; unknown fields are ignored (logged at debug).
    """
    if isinstance(body, Mapping):
        data = body
    elif isinstance(body, str | bytes | bytearray):
        data = loads_object(body)
    else:
        raise SchemaError(f"body must be a JSON object, got {type(body).__name__}")
    try:
        request = model.model_validate(data)
    except ValidationError as err:
        raise _schema_error(err) from err
    unknown = set(data) - set(model.model_fields)
    if unknown:
        logger.debug("ignoring unknown fields: %s", sorted(map(str, unknown)))
    return request


def run_rank(reranker: RerankerLike, args: RankArgs) -> Ranking:
    """Call ``reranker.rank``; a value the engine rejects becomes a 400 :class:`SchemaError`."""
    try:
        return reranker.rank(
            args.query,
            args.documents,
            args.top_n,
            overlap_tokens=args.overlap_tokens,
            max_chunks_per_doc=args.max_chunks_per_doc,
            raw=args.raw,
        )
    except (InvalidInputError, InvalidTypeError) as err:
        if isinstance(err, SchemaError):
            raise
        raise SchemaError(str(err)) from err


def relevance_results(
    ranking: Ranking,
    documents: Sequence[str],
    return_documents: bool,
    objects: Sequence[Mapping[str, Any] | None] = (),
) -> list[dict[str, Any]]:
    """``[{"index", "relevance_score", "document"?: {"text"}}]`` best first: the results list that
    SiliconFlow, DMXAPI, Cohere, Jina and the envelope API share. A document sent as an object
    (``objects[i]``) comes back as that object, every field kept."""
    results: list[dict[str, Any]] = []
    for item in ranking:
        row: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
        if return_documents:
            sent = objects[item.index] if item.index < len(objects) else None
            row["document"] = dict(sent) if sent is not None else {"text": documents[item.index]}
        results.append(row)
    return results

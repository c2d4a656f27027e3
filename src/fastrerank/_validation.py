"""Check ``rank()`` / ``score()`` / ``score_pairs()`` arguments once, at the boundary, into an immutable options object.

Every message names the parameter, the value (cut to 80 characters) and what was expected.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidInputError, InvalidTypeError, describe_value

__all__ = [
    "DEFAULT_MAX_CHUNKS_PER_DOC",
    "DEFAULT_OVERLAP_TOKENS",
    "MAX_OVERLAP_TOKENS",
    "DEFAULT_CACHE_OPTIONS",
    "CacheOptions",
    "CheckedPairs",
    "RankOptions",
    "check_cache_options",
    "check_documents",
    "check_pairs",
    "check_query",
    "check_rank_options",
]

MAX_OVERLAP_TOKENS = 80  # SiliconFlow's documented bound
# The hosted APIs' defaults (SiliconFlow), used by every entry point: Reranker, rank(), the CLI,
# the API schemas and the Ray scorer.
DEFAULT_OVERLAP_TOKENS = 80
DEFAULT_MAX_CHUNKS_PER_DOC = 1024


@dataclass(frozen=True)
class RankOptions:
    """Validated per-call options, passed down, never stored on the Reranker."""

    top_n: int | None
    overlap_tokens: int
    max_chunks_per_doc: int
    return_documents: bool
    raw: bool


def check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """An ``int`` (or integer-like such as ``numpy.int64``), never a bool or a float, within bounds."""
    number = _as_int(value)
    if number is None:
        raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__} {describe_value(value)}")
    if number < minimum or (maximum is not None and number > maximum):
        expected = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise InvalidInputError(f"{name} must be {expected}, got {number}")
    return number


def _as_int(value: object) -> int | None:
    """``value`` as an ``int`` if it is integer-like (not a bool), else ``None``."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:  # has __index__ but refuses it: a numpy array of several numbers, or of one but not 0-d
        return None


def check_bool(name: str, value: object) -> bool:
    """A real ``bool``: ``0``/``1``/``"false"`` are refused rather than guessed at."""
    if not isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be a bool, got {type(value).__name__} {describe_value(value)}")
    return value


@dataclass(frozen=True)
class CacheOptions:
    """Where models are cached and whether the hub may be asked: ``cache_dir`` and ``local_files_only``, checked."""

    cache_dir: Path | None  # absolute; None: the environment decides (FASTRERANK_CACHE, huggingface_hub's cache)
    local_files_only: bool


DEFAULT_CACHE_OPTIONS = CacheOptions(None, False)


def check_cache_options(cache_dir: object, local_files_only: object) -> CacheOptions:
    """``cache_dir`` (``None`` or a folder path, ``~`` expanded, made absolute) and ``local_files_only`` (a bool).

    Raises:
        InvalidTypeError: ``cache_dir`` is not a str, an ``os.PathLike`` or ``None``;
            ``local_files_only`` is not a bool.
        InvalidInputError: ``cache_dir`` is empty, or names an existing file.
    """
    local = check_bool("local_files_only", local_files_only)
    if cache_dir is None:
        return CacheOptions(None, local)
    path = os.fspath(cache_dir) if isinstance(cache_dir, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise InvalidTypeError(f"cache_dir must be a folder path (str or os.PathLike) or None, got {type(cache_dir).__name__}")
    if not path.strip():
        raise InvalidInputError(f"cache_dir must be a folder path, got {describe_value(path)}")
    folder = Path(os.path.abspath(Path(path).expanduser()))
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"cache_dir must be a folder, but {path!r} is a file")
    return CacheOptions(folder, local)


def check_query(query: object) -> str:
    """A non-empty ``str`` that is not only whitespace."""
    if not isinstance(query, str):
        raise InvalidTypeError(f"query must be str, got {type(query).__name__}")
    if not query:
        raise InvalidInputError("query must be a non-empty string")
    if query.isspace():
        raise InvalidInputError("query must not be only whitespace")
    return query


def check_documents(documents: object) -> list[str]:
    """A list, tuple or other sized, indexable collection of ``str`` (a 1-D numpy array, a pandas
    Series), materialised once as a list. A lone string, a mapping, a set or a generator is refused.
    """
    indexable = isinstance(documents, Sequence) or (
        hasattr(documents, "__len__") and hasattr(documents, "__getitem__") and getattr(documents, "ndim", 1) == 1
    )
    if isinstance(documents, (str, bytes, bytearray, Mapping)) or not indexable:
        raise InvalidTypeError(f"documents must be a sequence of str, got {type(documents).__name__}")
    texts = list(documents)  # type: ignore[call-overload]
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidTypeError(f"documents[{index}] must be str, got {type(text).__name__}")
    return texts


@dataclass(frozen=True)
class CheckedPairs:
    """``score_pairs`` input, checked: each distinct query once, and which query each document goes with."""

    queries: list[str]  # distinct queries, in order of first appearance
    documents: list[str]  # one per pair
    query_of: np.ndarray  # for each pair, the index of its query in ``queries``
    first_pair: list[int]  # for each distinct query, the first pair that has it (for error messages)


def _is_sequence(value: object) -> bool:
    """A list, tuple or other sized, indexable collection (a numpy array); never a string or a mapping."""
    if isinstance(value, (str, bytes, bytearray, Mapping)):
        return False
    return isinstance(value, Sequence) or (hasattr(value, "__len__") and hasattr(value, "__getitem__"))


def check_pairs(pairs: object) -> CheckedPairs:
    """A sequence of ``(query, document)`` sequences of two ``str``; every query as :func:`check_query` wants it.

    Accepts lists of tuples or lists, tuples, and a 2-column numpy array of strings.
    """
    if not _is_sequence(pairs) or getattr(pairs, "ndim", 1) not in (1, 2):
        raise InvalidTypeError(f"pairs must be a sequence of (query, document) pairs, got {type(pairs).__name__}")
    queries: dict[str, int] = {}
    documents: list[str] = []
    query_of: list[int] = []
    first_pair: list[int] = []
    for index, pair in enumerate(list(pairs)):  # type: ignore[call-overload]
        if not _is_sequence(pair) or getattr(pair, "ndim", 1) != 1:
            raise InvalidTypeError(f"pairs[{index}] must be a (query, document) pair, got {type(pair).__name__}")
        if len(pair) != 2:
            raise InvalidInputError(f"pairs[{index}] must hold 2 items (query, document), got {len(pair)}")
        query, document = pair[0], pair[1]
        for position, (text, what) in enumerate(((query, "the query"), (document, "the document"))):
            if not isinstance(text, str):
                raise InvalidTypeError(f"pairs[{index}][{position}] ({what}) must be str, got {type(text).__name__}")
        try:
            check_query(query)
        except (InvalidInputError, InvalidTypeError) as err:
            raise type(err)(f"pairs[{index}][0] (the query): {err}") from err
        if query not in queries:
            queries[query] = len(queries)
            first_pair.append(index)
        query_of.append(queries[query])
        documents.append(document)
    return CheckedPairs(queries=list(queries), documents=documents, query_of=np.asarray(query_of, dtype=np.intp),
                        first_pair=first_pair)


def check_rank_options(
    *,
    top_n: object,
    overlap_tokens: object,
    max_chunks_per_doc: object,
    return_documents: object,
    raw: object,
) -> RankOptions:
    """Validate the per-call options of ``rank()`` / ``score()``."""
    return RankOptions(
        top_n=None if top_n is None else check_int("top_n", top_n, minimum=1),
        overlap_tokens=check_int("overlap_tokens", overlap_tokens, minimum=0, maximum=MAX_OVERLAP_TOKENS),
        max_chunks_per_doc=check_int("max_chunks_per_doc", max_chunks_per_doc, minimum=1),
        return_documents=check_bool("return_documents", return_documents),
        raw=check_bool("raw", raw),
    )

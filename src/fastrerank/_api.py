"""The module-level API: ``convert()``, and ``rank()`` / ``arank()`` / ``score_pairs()`` with their one process-wide reranker cache.

``rank()`` keeps one :class:`Reranker` per (model, options) for the life of the process, created
on first use, so that many threads can call it and the model is loaded once. This cache is the
only global state in fastrerank; :func:`clear_cache` closes and empties it.

The cache lock is held only to look up and insert, never while a model loads: one lock per key
makes other threads wait for that model only. After ``fork`` the child gets fresh locks and
forgets loads in progress (the threads doing them were not copied), so a process forked while
another thread was loading a model loads it again itself instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from . import _hub as hub
from ._conversion import check_output, convert_folder
from ._loading import local_folder_or_hub_id
from ._reranker import DEFAULT_MODEL, Reranker
from ._validation import DEFAULT_MAX_CHUNKS_PER_DOC, DEFAULT_OVERLAP_TOKENS
from .errors import ModelClosedError
from .results import Ranking

__all__ = ["arank", "clear_cache", "convert", "rank", "score_pairs", "with_cached_reranker"]

T = TypeVar("T")

_Key = tuple[object, ...]
_cache: dict[_Key, Reranker] = {}
_cache_lock = threading.Lock()
_loading: dict[_Key, threading.Lock] = {}  # one lock per key while its model loads


def _after_fork_in_child() -> None:
    global _cache_lock, _loading
    _cache_lock = threading.Lock()
    _loading = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def convert(
    model: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    quantization: str = "int8",
    revision: str | None = None,
    force: bool = False,
    allow_pickle: bool = False,
    progress: bool | None = None,
) -> Path:
    """Convert an XLM-RoBERTa reranker to a fastrerank folder (CTranslate2 encoder + head) and return its path.

    ``model`` is a local Hugging Face folder or a hub id (downloaded with huggingface_hub,
    honouring ``HF_HOME`` and ``HF_HUB_OFFLINE``). The output is written atomically: it either
    appears complete or not at all. An existing output is only replaced with ``force=True``, and only
    if it is a previous conversion (never another folder, a file, or a folder holding the source).

    Example:
        >>> fastrerank.convert("BAAI/bge-reranker-base", "bge-base-int8")  # doctest: +SKIP
        PosixPath('bge-base-int8')
    """
    revision = hub.check_revision(revision)  # also recorded in fastrerank.json for a local folder
    name, folder = local_folder_or_hub_id(model)
    if folder is None:  # a hub id: refuse an output that would be refused anyway before downloading gigabytes
        check_output(Path(os.path.abspath(output_dir)), force=force)
    source = folder or hub.download_snapshot(name, revision, allow_pickle=allow_pickle)
    return convert_folder(
        source, Path(output_dir), quantization=quantization, force=force, allow_pickle=allow_pickle,
        source_model=name, source_revision=revision, progress=progress,
    )


def rank(
    query: str,
    documents: Sequence[str],
    top_n: int | None = None,
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    device: str = "auto",
    compute_type: str = "default",
    max_length: int | None = None,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
    return_documents: bool = False,
    raw: bool = False,
) -> Ranking:
    """Rank ``documents`` for ``query`` with a process-wide :class:`Reranker` for ``model``.

    The first call for a model loads it (converting it once if needed); later calls reuse it.
    Safe to call from many threads. See :meth:`Reranker.rank` for the options.

    Example:
        >>> from fastrerank import rank
        >>> rank("capital of France", ["Berlin", "Paris"], top_n=1)[0].index  # doctest: +SKIP
        1
    """
    return with_cached_reranker(
        lambda reranker: reranker.rank(query, documents, top_n, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                       return_documents=return_documents, raw=raw),
        model=model, device=device, compute_type=compute_type, max_length=max_length,
    )


async def arank(
    query: str,
    documents: Sequence[str],
    top_n: int | None = None,
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    device: str = "auto",
    compute_type: str = "default",
    max_length: int | None = None,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
    return_documents: bool = False,
    raw: bool = False,
) -> Ranking:
    """:func:`rank` as a coroutine that never blocks the event loop: loading and ranking run in a worker thread.

    Example:
        >>> ranking = await fastrerank.arank("capital of France", ["Berlin", "Paris"])  # doctest: +SKIP
    """
    return await asyncio.to_thread(rank, query, documents, top_n, model=model, device=device, compute_type=compute_type,
                                   max_length=max_length, overlap_tokens=overlap_tokens,
                                   max_chunks_per_doc=max_chunks_per_doc, return_documents=return_documents, raw=raw)


def score_pairs(
    pairs: Sequence[Sequence[str]],
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    device: str = "auto",
    compute_type: str = "default",
    max_length: int | None = None,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
    raw: bool = False,
) -> np.ndarray:
    """Scores of many ``(query, document)`` pairs with the process-wide :class:`Reranker` for ``model``.

    See :meth:`Reranker.score_pairs`; the model is shared with :func:`rank` as for :func:`rank`.

    Example:
        >>> from fastrerank import score_pairs
        >>> score_pairs([("capital of France", "Paris"), ("largest ocean", "Berlin")])  # doctest: +SKIP
        array([0.981, 0.002])
    """
    return with_cached_reranker(
        lambda reranker: reranker.score_pairs(pairs, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                              raw=raw),
        model=model, device=device, compute_type=compute_type, max_length=max_length,
    )


def with_cached_reranker(
    call: Callable[[Reranker], T],
    *,
    model: str | os.PathLike[str],
    device: str,
    compute_type: str,
    max_length: int | None,
) -> T:
    """``call(reranker)`` with the process-wide :class:`Reranker` for these options, loaded on first use.

    What :func:`rank` and :func:`score_pairs` use, and the framework integrations with them, so
    that every part of a process shares one model. A reranker that :func:`clear_cache` closes
    between the lookup and the call is looked up again, which loads the model afresh.
    """
    while True:
        reranker = _default_reranker(model, device, compute_type, max_length)
        try:
            return call(reranker)
        except ModelClosedError:
            # clear_cache() closed it between the lookup and the call (a call it had seen start
            # would have finished first): the next lookup loads the model again.
            with _cache_lock:
                if any(cached is reranker for cached in _cache.values()):
                    raise


def _default_reranker(model: str | os.PathLike[str], device: str, compute_type: str, max_length: int | None) -> Reranker:
    key = (os.fspath(model) if isinstance(model, os.PathLike) else model, device, compute_type, max_length)
    with _cache_lock:
        reranker = _cache.get(key)
        if reranker is not None:
            return reranker
        loading = _loading.setdefault(key, threading.Lock())
    with loading:
        with _cache_lock:
            reranker = _cache.get(key)  # another thread loaded it while we waited
        if reranker is not None:
            return reranker
        try:
            reranker = Reranker(model, device=device, compute_type=compute_type, max_length=max_length)
            with _cache_lock:
                _cache[key] = reranker
        finally:
            with _cache_lock:
                if _loading.get(key) is loading:
                    del _loading[key]
        return reranker


def clear_cache() -> None:
    """Close and forget every reranker that :func:`rank` created.

    Calls in flight finish first; a call that looked its model up just before is retried with a
    fresh one, so clearing never breaks a :func:`rank` call of another thread.
    """
    with _cache_lock:
        rerankers = list(_cache.values())
        _cache.clear()
    for reranker in rerankers:
        reranker.close()

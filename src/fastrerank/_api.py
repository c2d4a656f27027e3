"""The module-level API: ``convert()``, and ``rank()`` / ``arank()`` / ``score_pairs()`` with their one process-wide reranker cache.

``rank()`` keeps one :class:`Reranker` per (model, options, cache_dir) for the life of the process, created
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
from ._validation import DEFAULT_MAX_CHUNKS_PER_DOC, DEFAULT_OVERLAP_TOKENS, CacheOptions, check_cache_options
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
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> Path:
    """Convert a supported reranker to a fastrerank folder (CTranslate2 encoder + head) and return its path.

    The output is written atomically: it either appears complete or not at all. An existing
    output is only replaced with ``force=True``, and only if it is a previous conversion (never
    another folder, a file, or a folder holding the source).

    Args:
        model: a local Hugging Face folder or a hub id (downloaded with huggingface_hub,
            honouring ``HF_HOME``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``).
        output_dir: the folder to write.
        quantization: one of ``int8``, ``int8_float32``, ``int8_float16``, ``int8_bfloat16``,
            ``int16``, ``float16``, ``bfloat16``, ``float32``.
        revision: hub revision (branch, tag or commit) when ``model`` is a hub id.
        force: replace an existing output that is a previous conversion.
        allow_pickle: accept a ``pytorch_model.bin`` checkpoint (read with ``weights_only=True``).
        progress: show a progress bar (``None``: when stderr is a terminal).
        cache_dir: where a hub id's download is kept (``<cache_dir>/hub``); ``None``:
            huggingface_hub's own cache (``$HF_HUB_CACHE``).
        local_files_only: never use the network: a hub id must already be downloaded, else
            :class:`~fastrerank.ModelNotFoundError`.

    Returns:
        The path of the converted folder.

    Raises:
        InvalidTypeError: an argument has the wrong type.
        InvalidInputError: an argument has a value outside what is accepted.
        ModelNotFoundError: no such folder, or a hub id that is unknown or not found locally
            when ``local_files_only=True`` or offline.
        ConversionError: the output is refused, or writing it failed (nothing is left behind).

    Example:
        >>> fastrerank.convert("BAAI/bge-reranker-base", "bge-base-int8")  # doctest: +SKIP
        PosixPath('bge-base-int8')
    """
    revision = hub.check_revision(revision)  # also recorded in fastrerank.json for a local folder
    cache = check_cache_options(cache_dir, local_files_only)
    name, folder = local_folder_or_hub_id(model)
    if folder is None:  # a hub id: refuse an output that would be refused anyway before downloading gigabytes
        check_output(Path(os.path.abspath(output_dir)), force=force)
    source = folder or hub.download_snapshot(name, revision, allow_pickle=allow_pickle, cache_dir=cache.cache_dir,
                                             local_files_only=cache.local_files_only)
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
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> Ranking:
    """Rank ``documents`` for ``query`` with a process-wide :class:`Reranker` for ``model``.

    The first call for a model and its options (``device``, ``compute_type``, ``max_length``,
    ``cache_dir``) loads it, converting it once if needed; later calls reuse it. Safe to call from
    many threads. ``local_files_only`` only decides whether that first load may use the network:
    calls that differ in it alone share one model.

    Args:
        query: the query.
        documents: the texts to rank.
        top_n: how many to return, best first; ``None`` returns all.
        model: a converted folder, a Hugging Face folder or a hub id.
        device: as for :class:`Reranker`.
        compute_type: as for :class:`Reranker`.
        max_length: as for :class:`Reranker`.
        overlap_tokens: as for :meth:`Reranker.rank`.
        max_chunks_per_doc: as for :meth:`Reranker.rank`.
        return_documents: as for :meth:`Reranker.rank`.
        raw: as for :meth:`Reranker.rank`.
        cache_dir: as for :class:`Reranker`: where conversions (and hub downloads) are cached.
        local_files_only: as for :class:`Reranker`: never use the network.

    Returns:
        The :class:`~fastrerank.Ranking`, best first.

    Raises:
        InvalidTypeError: an argument has the wrong type.
        InvalidInputError: an argument has a value outside what is accepted.
        ModelLoadError: the model cannot be found, converted or loaded (its subclasses say why).

    Example:
        >>> from fastrerank import rank
        >>> rank("capital of France", ["Berlin", "Paris"], top_n=1)[0].index  # doctest: +SKIP
        1
    """
    return with_cached_reranker(
        lambda reranker: reranker.rank(query, documents, top_n, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                       return_documents=return_documents, raw=raw),
        model=model, device=device, compute_type=compute_type, max_length=max_length, cache_dir=cache_dir,
        local_files_only=local_files_only,
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
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> Ranking:
    """:func:`rank` as a coroutine that never blocks the event loop: loading and ranking run in a worker thread.

    Takes and returns what :func:`rank` does, and raises what it raises.

    Example:
        >>> ranking = await fastrerank.arank("capital of France", ["Berlin", "Paris"])  # doctest: +SKIP
    """
    return await asyncio.to_thread(rank, query, documents, top_n, model=model, device=device, compute_type=compute_type,
                                   max_length=max_length, overlap_tokens=overlap_tokens,
                                   max_chunks_per_doc=max_chunks_per_doc, return_documents=return_documents, raw=raw,
                                   cache_dir=cache_dir, local_files_only=local_files_only)


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
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> np.ndarray:
    """Scores of many ``(query, document)`` pairs with the process-wide :class:`Reranker` for ``model``.

    See :meth:`Reranker.score_pairs`; the model is shared with :func:`rank` as for :func:`rank`.

    Args:
        pairs: ``(query, document)`` pairs; queries may differ.
        model: as for :func:`rank`.
        device: as for :class:`Reranker`.
        compute_type: as for :class:`Reranker`.
        max_length: as for :class:`Reranker`.
        overlap_tokens: as for :meth:`Reranker.rank`.
        max_chunks_per_doc: as for :meth:`Reranker.rank`.
        raw: as for :meth:`Reranker.rank`.
        cache_dir: as for :class:`Reranker`: where conversions (and hub downloads) are cached.
        local_files_only: as for :class:`Reranker`: never use the network.

    Returns:
        The scores in input order, as a float64 array.

    Raises:
        InvalidTypeError: an argument has the wrong type.
        InvalidInputError: an argument has a value outside what is accepted.
        ModelLoadError: the model cannot be found, converted or loaded (its subclasses say why).

    Example:
        >>> from fastrerank import score_pairs
        >>> score_pairs([("capital of France", "Paris"), ("largest ocean", "Berlin")])  # doctest: +SKIP
        array([0.981, 0.002])
    """
    return with_cached_reranker(
        lambda reranker: reranker.score_pairs(pairs, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                              raw=raw),
        model=model, device=device, compute_type=compute_type, max_length=max_length, cache_dir=cache_dir,
        local_files_only=local_files_only,
    )


def with_cached_reranker(
    call: Callable[[Reranker], T],
    *,
    model: str | os.PathLike[str],
    device: str,
    compute_type: str,
    max_length: int | None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> T:
    """``call(reranker)`` with the process-wide :class:`Reranker` for these options, loaded on first use.

    What :func:`rank` and :func:`score_pairs` use, and the framework integrations with them, so
    that every part of a process shares one model. A reranker that :func:`clear_cache` closes
    between the lookup and the call is looked up again, which loads the model afresh.
    """
    cache = check_cache_options(cache_dir, local_files_only)  # before the key: a list would not even hash
    while True:
        reranker = _default_reranker(model, device, compute_type, max_length, cache)
        try:
            return call(reranker)
        except ModelClosedError:
            # clear_cache() closed it between the lookup and the call (a call it had seen start
            # would have finished first): the next lookup loads the model again.
            with _cache_lock:
                if any(cached is reranker for cached in _cache.values()):
                    raise


def _default_reranker(
    model: str | os.PathLike[str], device: str, compute_type: str, max_length: int | None, cache: CacheOptions
) -> Reranker:
    # local_files_only is not part of the key: it only decides whether the first load may use the
    # network, and a model loaded either way is the same model (keying on it would load a copy).
    key = (os.fspath(model) if isinstance(model, os.PathLike) else model, device, compute_type, max_length, cache.cache_dir)
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
            reranker = Reranker(model, device=device, compute_type=compute_type, max_length=max_length,
                                cache_dir=cache.cache_dir, local_files_only=cache.local_files_only)
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

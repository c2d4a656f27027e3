"""``Reranker``: validate -> tokenize -> chunk -> batch -> run -> max-pool -> ranking.

One pipeline serves :meth:`Reranker.rank`, :meth:`Reranker.score` and :meth:`Reranker.score_pairs`:
it scores documents against one or many queries, batching every window of every document together.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from . import _model_format as model_format
from ._conversion import QUANTIZATIONS
from ._cpus import usable_cores
from ._ctranslate2 import import_ctranslate2
from ._engine.batching import plan_batches
from ._engine.chunking import WindowPlan, chunk_spans, plan_windows
from ._engine.head import ClassificationHead, sigmoid
from ._engine.pair_template import PairTemplate
from ._engine.runtime import BatchRunner, EncoderRuntime
from ._engine.tokenization import TextEncoder
from ._loading import conversion_quantization, resolve_model
from ._validation import (
    DEFAULT_MAX_CHUNKS_PER_DOC,
    DEFAULT_OVERLAP_TOKENS,
    RankOptions,
    check_cache_options,
    check_documents,
    check_int,
    check_pairs,
    check_query,
    check_rank_options,
)
from .errors import InferenceError, InvalidInputError, InvalidTypeError, describe_value
from .results import RankedDocument, Ranking

__all__ = ["DEFAULT_BATCH_TOKENS", "DEFAULT_MODEL", "Reranker", "default_batch_tokens"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "BAAI/bge-reranker-v2-m3"
# Padded tokens per batch when the caller does not say. On the CPU, small length-sorted batches
# waste little on padding, their buffers stay in cache, and many of them keep every replica busy
# to the end of a call; a replica of several threads (replicas=1) needs batches twice as large to
# keep its OpenMP team busy; a GPU needs large batches to be busy. All chosen by measurement:
# benchmarks/RESULTS-round3.md ("The search"), benchmarks/RESULTS.md ("What this round changed", "GPU").
DEFAULT_BATCH_TOKENS: dict[str, int] = {"cpu": 512, "cuda": 8192}
CPU_BATCH_TOKENS_SHARED_REPLICA = 1024
# On CUDA, replicas are CUDA streams: up to 4 batches in flight keep CTranslate2's kernels and its
# host-side work overlapping, and a call is not cut below 2048 padded tokens a batch to feed them
# (smaller batches only add launches). Measured: benchmarks/RESULTS-gpu.md.
CUDA_REPLICAS = 4
CUDA_MIN_SPLIT_TOKENS = 2048
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = ("default", "auto", *QUANTIZATIONS)
MIN_MAX_LENGTH = 16

ProgressCallback = Callable[[int, int], None]


def default_batch_tokens(device: str, threads_per_replica: int = 1) -> int:
    """The padded-token budget per batch used when ``batch_tokens`` is not given, for ``"cpu"`` or ``"cuda"``.

    On the CPU: 512 when each replica runs on one thread (the default layout), 1024 when a replica
    has several (``replicas`` below ``threads``).
    """
    if device == "cpu" and threads_per_replica > 1:
        return CPU_BATCH_TOKENS_SHARED_REPLICA
    return DEFAULT_BATCH_TOKENS[device]


class Reranker:
    """A cross-encoder reranker running on CTranslate2.

    Args:
        model: a folder made by :func:`fastrerank.convert`, a Hugging Face model folder, or a hub
            id. The last two are converted once (int8 on CPU, float16 on CUDA, unless
            ``compute_type`` names a quantization) into a cache and loaded from there afterwards.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2's compute type; ``"default"`` keeps the converted one.
        max_length: tokens per model call, special tokens included; defaults to the model's
            recommended 512, and may not exceed its positions.
        threads: CPU threads for the encoder; 0 uses every core this process may run on: its CPU
            affinity, bounded by its cgroup's CPU quota in a container (the :attr:`threads`
            attribute says how many that is).
        replicas: how many batches run at once, each on ``threads // replicas`` threads; the
            replicas share one copy of the weights, each holds the buffers of the batch it runs.
            ``None`` (default): one per thread, at most one per core, on the CPU (every batch on
            one core, as many batches as cores: the fastest layout measured, and no OpenMP thread
            team); on CUDA, 4, each running its batches on a CUDA stream of its own (CPU threads
            do not bound them there; at most :func:`max_threads`). ``replicas=1`` runs one batch at a time on all the threads: on the CPU, the
            lowest latency for a call of a single short document.
        batch_tokens: padded tokens per batch; bounds the memory of a batch whatever the number of
            documents (a call holds up to ``replicas`` batches at once). ``None`` (default): on the
            CPU 512, or 1024 when a replica has several threads; 8192 on CUDA (:func:`default_batch_tokens`).
        revision: hub revision (branch, tag or commit) when ``model`` is a hub id.
        allow_pickle: accept a ``pytorch_model.bin`` checkpoint (read with ``weights_only=True``).
        cache_dir: where conversions are cached, and hub downloads (in ``<cache_dir>/hub``).
            ``None`` (default): conversions in ``$FASTRERANK_CACHE``, else ``$HF_HOME/fastrerank``,
            and downloads in huggingface_hub's own cache (``$HF_HUB_CACHE``).
        local_files_only: never use the network: a hub id must already be converted in the cache
            or downloaded, else :class:`~fastrerank.ModelNotFoundError`. ``HF_HUB_OFFLINE=1``
            does the same for every call.

    Raises:
        InvalidTypeError: an argument has the wrong type (``cache_dir`` an int, ...).
        InvalidInputError: an argument has a value outside what is accepted (an unknown device,
            ``threads`` above :func:`max_threads`, a ``max_length`` above the model's positions...).
        ModelNotFoundError: no such folder, or a hub id that is unknown, or not found locally
            when ``local_files_only=True`` or offline.
        ModelLoadError: the model cannot be loaded or converted (its subclasses say why).

    A Reranker changes nothing in the process it runs in: not malloc, not the environment (on a
    CPU with AVX-512, ``CT2_FORCE_CPU_ISA`` is set only while the first model loads, see
    :mod:`fastrerank._engine.cpu_isa`). On the CPU it works in children made by ``fork`` (gunicorn
    ``--preload``, multiprocessing), rebuilding its encoder there on first use (CUDA cannot be used
    after a fork: there its calls raise :class:`InferenceError` saying so), and it pickles by
    model and options, loading again on the other side (multiprocessing ``spawn``, Ray). A process
    that is yours to tune can call :func:`fastrerank.tune_process`.

    Example:
        >>> reranker = Reranker("path/to/converted")  # doctest: +SKIP
        >>> reranker  # doctest: +SKIP
        <Reranker model='path/to/converted' device='cpu' compute_type='int8' threads=4 replicas=4 max_length=512 open>
        >>> reranker.rank("what is a panda?", ["The giant panda is a bear.", "Paris"], top_n=1)  # doctest: +SKIP
        <Ranking 1 document, 17 tokens: #0 0.9987>
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str = "auto",
        compute_type: str = "default",
        max_length: int | None = None,
        threads: int = 0,
        replicas: int | None = None,
        batch_tokens: int | None = None,
        revision: str | None = None,
        allow_pickle: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> None:
        # Device and compute type are checked before anything is converted: CTranslate2 would only
        # refuse them when loading the model, with an error that reads like a broken model folder.
        cache = check_cache_options(cache_dir, local_files_only)
        self.device = _resolve_device(device)
        _check_compute_type(compute_type, self.device)
        threads = check_int("threads", threads, minimum=0, maximum=max_threads())
        self.threads = threads or usable_cores()
        self.replicas = _check_replicas(replicas, self.device, self.threads)
        self.batch_tokens = (
            default_batch_tokens(self.device, self.threads // self.replicas) if batch_tokens is None
            else check_int("batch_tokens", batch_tokens, minimum=1)
        )
        quantization = conversion_quantization(self.device, compute_type)
        # What a copy or an unpickled Reranker is loaded from (see __reduce__).
        self._init_args = (os.fspath(model) if isinstance(model, os.PathLike) else model,
                           {"device": device, "compute_type": compute_type, "max_length": max_length, "threads": threads,
                            "replicas": replicas, "batch_tokens": batch_tokens, "revision": revision, "allow_pickle": allow_pickle,
                            "cache_dir": None if cache.cache_dir is None else str(cache.cache_dir),
                            "local_files_only": cache.local_files_only})
        self.model_path: Path = resolve_model(model, quantization=quantization, revision=revision, allow_pickle=allow_pickle,
                                              cache=cache)
        self.metadata = model_format.verify_folder(self.model_path)
        self.max_length = self._check_max_length(max_length)
        self._text = TextEncoder(self.model_path / model_format.TOKENIZER_FILE, embedding_rows=self.metadata.embedding_rows)
        self._head = ClassificationHead.from_file(self.model_path / model_format.HEAD_FILE, self.metadata.hidden_size)
        self._pairs = PairTemplate.from_record(self.metadata.pair_template)
        self._runtime = EncoderRuntime(
            self.model_path, device=self.device, compute_type=compute_type, threads=self.threads,
            replicas=self.replicas, pair_template=self._pairs,
        )

    def _check_max_length(self, max_length: int | None) -> int:
        if max_length is None:
            return self.metadata.recommended_max_length
        return check_int("max_length", max_length, minimum=MIN_MAX_LENGTH, maximum=self.metadata.max_positions)

    @property
    def compute_type(self) -> str:
        """The compute type CTranslate2 runs with (``"default"`` resolved to the folder's own)."""
        return self._runtime.compute_type

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (calls then raise :class:`~fastrerank.ModelClosedError`)."""
        return self._runtime.closed

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        return_documents: bool = False,
        raw: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Ranking:
        """Rank ``documents`` by relevance to ``query``, best first; ties keep input order.

        A document's score is the highest sigmoid score of its windows (see the window rule in
        :mod:`fastrerank._engine.chunking`), or the highest raw logit with ``raw=True``.
        ``top_n=None`` returns every document; a ``top_n`` above their number returns all of them.
        ``progress``, if given, is called after each batch with (rows done, rows in all).

        Example:
            >>> ranking = reranker.rank("capital of France", ["Paris", "Berlin"])  # doctest: +SKIP
            >>> [(item.index, round(item.score, 3)) for item in ranking]  # doctest: +SKIP
            [(0, 0.981), (1, 0.004)]
        """
        options = check_rank_options(top_n=top_n, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                     return_documents=return_documents, raw=raw)
        texts = check_documents(documents)
        scores, tokens, truncated = self._score([check_query(query)], texts, _single_query(len(texts)), options,
                                                progress, _RANK_NAMES)
        order = np.argsort(-scores, kind="stable")[: options.top_n]
        results = tuple(
            RankedDocument(int(i), float(scores[i]), texts[i] if options.return_documents else None) for i in order
        )
        return Ranking(results=results, tokens=tokens, query_truncated=truncated)

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Per-document scores in input order, as a float64 array (``raw=True``: max logits)."""
        options = check_rank_options(top_n=None, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                     return_documents=False, raw=raw)
        query = check_query(query)
        texts = check_documents(documents)
        return self._score([query], texts, _single_query(len(texts)), options, progress, _RANK_NAMES)[0]

    def score_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        *,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Scores of many ``(query, document)`` pairs, in input order, as a float64 array.

        Pairs may have different queries. Each pair is scored as :meth:`score` scores it (the
        same windows, the best window's score), but the windows of all the pairs are
        length-sorted and batched together: the fast path for evaluation and batch jobs, where
        calling :meth:`rank` once per query would run many small, half-empty batches.
        ``progress`` is called as for :meth:`rank`.

        Example:
            >>> reranker.score_pairs([("capital of France", "Paris"), ("largest ocean", "the Pacific")])  # doctest: +SKIP
            array([0.981, 0.975])
        """
        options = check_rank_options(top_n=None, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                     return_documents=False, raw=raw)
        checked = check_pairs(pairs)
        return self._score(checked.queries, checked.documents, checked.query_of, options, progress,
                           _Names(checked.first_pair))[0]

    async def arank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        return_documents: bool = False,
        raw: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Ranking:
        """:meth:`rank` as a coroutine that never blocks the event loop: it runs in a worker thread.

        The thread is the loop's default executor (``asyncio.to_thread``); ``progress`` is called
        there. Cancelling the awaiting task does not stop the ranking already running, which
        finishes in its thread (as :meth:`close` waits for it) and is discarded.

        Example:
            >>> ranking = await reranker.arank("capital of France", ["Paris", "Berlin"])  # doctest: +SKIP
        """
        return await asyncio.to_thread(self.rank, query, documents, top_n, overlap_tokens=overlap_tokens,
                                       max_chunks_per_doc=max_chunks_per_doc, return_documents=return_documents,
                                       raw=raw, progress=progress)

    async def ascore(
        self,
        query: str,
        documents: Sequence[str],
        *,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """:meth:`score` in a worker thread, as :meth:`arank` runs :meth:`rank`."""
        return await asyncio.to_thread(self.score, query, documents, overlap_tokens=overlap_tokens,
                                       max_chunks_per_doc=max_chunks_per_doc, raw=raw, progress=progress)

    async def ascore_pairs(
        self,
        pairs: Sequence[Sequence[str]],
        *,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """:meth:`score_pairs` in a worker thread, as :meth:`arank` runs :meth:`rank`."""
        return await asyncio.to_thread(self.score_pairs, pairs, overlap_tokens=overlap_tokens,
                                       max_chunks_per_doc=max_chunks_per_doc, raw=raw, progress=progress)

    def _score(
        self, queries: list[str], docs: list[str], query_of: np.ndarray, options: RankOptions,
        progress: ProgressCallback | None, names: _Names,
    ) -> tuple[np.ndarray, int, bool]:
        # The whole call counts as one: close() waits for it to finish, never cuts it between batches.
        with self._runtime.call() as run_call:
            return self._score_open(queries, docs, query_of, options, progress, names, run_call)

    def _score_open(
        self, queries: list[str], docs: list[str], query_of: np.ndarray, options: RankOptions,
        progress: ProgressCallback | None, names: _Names, run_call: BatchRunner,
    ) -> tuple[np.ndarray, int, bool]:
        """Score ``docs[i]`` against ``queries[query_of[i]]``: one pipeline for rank, score and score_pairs.

        Every window of every document is length-sorted and batched together whatever its query;
        each document's score is the maximum over its own windows.
        """
        query_limit = self.max_length * 3 // 4
        # Cut before tokenizing, like documents; one token past the limit tells whether it was cut.
        query_ids = self._text.encode_many(queries, max_tokens=query_limit + 1)
        cut = 0
        for index, (query, ids) in enumerate(zip(queries, query_ids)):
            if not len(ids):
                raise InvalidInputError(f"{names.query(index)} produced no tokens: {describe_value(query)}")
            if len(ids) > query_limit:
                cut += 1
                query_ids[index] = ids[:query_limit]
        if cut:
            logger.warning("%s of over %d tokens cut to %d (max_length * 3 // 4)",
                           "query" if cut == 1 else f"{cut} queries", query_limit, query_limit)
        if not docs:
            return np.empty(0, dtype=np.float64), 0, cut > 0
        plans = [self._plan(len(ids), options, names, index) for index, ids in enumerate(query_ids)]
        doc_ids = self._encode_documents(docs, query_of, plans)

        prefixes = [self._pairs.prefix(ids) for ids in query_ids]
        suffix = self._pairs.suffix
        # Rows are kept as the bytes of int32 arrays (4 bytes a token, whatever the number of
        # documents); identical windows (same query, same text) are run once.
        unique_rows: dict[bytes, int] = {}
        chunk_doc, chunk_row = [], []
        for doc_index, (query_index, ids) in enumerate(zip(query_of.tolist(), doc_ids)):
            prefix = prefixes[query_index]
            for start, end in chunk_spans(len(ids), plans[query_index]):
                row = np.concatenate((prefix, ids[start:end], suffix)).tobytes()
                chunk_doc.append(doc_index)
                chunk_row.append(unique_rows.setdefault(row, len(unique_rows)))
        rows = list(unique_rows)
        del unique_rows, doc_ids

        logits = np.empty(len(rows), dtype=np.float64)
        done = 0
        lengths = [len(row) // 4 for row in rows]
        batches = plan_batches(lengths, self.batch_tokens, parts=self.replicas,
                               min_split_tokens=CUDA_MIN_SPLIT_TOKENS if self.device == "cuda" else 0)

        def take(index: int, states: np.ndarray) -> None:  # on this thread, as each batch ends
            nonlocal done
            batch = batches[index]
            with np.errstate(all="ignore"):  # non-finite values are reported below, not warned about
                logits[batch] = self._head(states)
            done += len(batch)
            if progress is not None:
                progress(done, len(rows))

        run_call([[np.frombuffer(rows[i], dtype=np.int32) for i in batch] for batch in batches], take)

        chunk_logits = logits[np.asarray(chunk_row)]
        finite = np.isfinite(chunk_logits)
        if not finite.all():
            bad = chunk_doc[int(np.flatnonzero(~finite)[0])]
            raise InferenceError(
                f"the model produced a non-finite score for {names.item(bad)} (compute_type={self.compute_type}); "
                "try compute_type='float32'"
            )
        best = np.full(len(docs), -np.inf)
        np.maximum.at(best, np.asarray(chunk_doc), chunk_logits)
        tokens = sum(lengths)
        return (best if options.raw else sigmoid(best)), tokens, cut > 0

    def _plan(self, query_tokens: int, options: RankOptions, names: _Names, query_index: int) -> WindowPlan:
        try:
            return plan_windows(self.max_length, query_tokens, options.overlap_tokens, options.max_chunks_per_doc,
                                specials_per_pair=self._pairs.specials_per_pair)
        except InvalidInputError as err:
            if names.pairs is None:
                raise
            raise InvalidInputError(f"{names.query(query_index)}: {err}") from err

    def _encode_documents(self, docs: list[str], query_of: np.ndarray, plans: list[WindowPlan]) -> list[np.ndarray]:
        """Token ids of each document, cut to what its own query's windows can cover.

        Documents are tokenized in one call per distinct limit (one for rank), never to a longer
        limit than their own: a text cut before tokenizing may end in different pieces.
        """
        by_limit: dict[int, list[int]] = {}
        for doc_index, query_index in enumerate(query_of.tolist()):
            by_limit.setdefault(plans[query_index].max_document_tokens, []).append(doc_index)
        doc_ids: list[np.ndarray] = [_NO_IDS] * len(docs)
        for limit, members in by_limit.items():
            for doc_index, ids in zip(members, self._text.encode_many([docs[i] for i in members], max_tokens=limit)):
                doc_ids[doc_index] = ids
        return doc_ids

    def close(self) -> None:
        """Release the model after the calls in flight finish; later calls raise ``ModelClosedError``. Idempotent.

        From a ``progress`` callback it returns at once; the model is released when the calls in flight end.
        """
        self._runtime.close()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def __reduce__(self) -> tuple[object, ...]:
        # A loaded encoder cannot cross a process boundary, and a copy must not share one that
        # closing either would release: both load the model again from what it was made from.
        # A local folder is kept as an absolute path, so the other side need not share the cwd.
        model, options = self._init_args
        if isinstance(model, str) and Path(model).expanduser().exists():
            model = os.path.abspath(Path(model).expanduser())
        return (_load_reranker, (model, options))

    def __repr__(self) -> str:
        """``<Reranker model='...' device='cpu' compute_type='int8' threads=2 replicas=2 max_length=512 open>`` (or ``closed``).

        ``model`` is what the Reranker was made from (a hub id or a path), cut to 80 characters.
        """
        return (f"<Reranker model={describe_value(self._init_args[0])} device={self.device!r} "
                f"compute_type={self.compute_type!r} threads={self.threads} replicas={self.replicas} max_length={self.max_length} "
                f"{'closed' if self.closed else 'open'}>")


class _Names:
    """How errors name what is scored: ``query`` and ``documents[i]`` for rank and score, ``pairs[i]`` for score_pairs."""

    def __init__(self, first_pair: Sequence[int] | None) -> None:
        self.pairs = first_pair  # for each distinct query, the first pair that has it

    def query(self, query_index: int) -> str:
        return "query" if self.pairs is None else f"pairs[{self.pairs[query_index]}][0]"

    def item(self, index: int) -> str:
        return f"documents[{index}]" if self.pairs is None else f"pairs[{index}]"


_RANK_NAMES = _Names(None)
_NO_IDS = np.zeros(0, dtype=np.int32)


def _single_query(count: int) -> np.ndarray:
    """``query_of`` for documents that all share query 0."""
    return np.zeros(count, dtype=np.intp)


def _load_reranker(model: str, options: dict[str, object]) -> Reranker:
    return Reranker(model, **options)  # type: ignore[arg-type]


def max_threads() -> int:
    """The most ``threads`` a Reranker accepts: 4 per usable core (more only adds contention).

    CTranslate2 does not check it: tens of thousands of OpenMP threads end the process.
    """
    return 4 * usable_cores()


def _check_replicas(replicas: object, device: str, threads: int) -> int:
    """The number of encoder replicas: ``None`` picks one per thread (at most one per core) on the CPU and
    4 CUDA streams on CUDA."""
    if device != "cpu":
        # A CUDA replica is a stream: its thread mostly waits for the GPU, so CPU threads do not bound it.
        if replicas is None:
            return CUDA_REPLICAS
        return check_int("replicas", replicas, minimum=1, maximum=max_threads())
    if replicas is None:
        # More replicas than cores (threads may be up to 4 a core) would only add buffers.
        return min(threads, usable_cores())
    count = check_int("replicas", replicas, minimum=1)
    if count > threads:
        raise InvalidInputError(f"replicas must be at most threads ({threads}), got {count}: each replica needs a thread")
    return count


def _resolve_device(device: object) -> str:
    if not isinstance(device, str):
        raise InvalidTypeError(f"device must be str, got {type(device).__name__}")
    if device not in DEVICES:
        raise InvalidInputError(f"{describe_value(device)} is not a valid device (accepted: {', '.join(DEVICES)})")
    if device == "cpu":
        return device
    ctranslate2 = import_ctranslate2()

    has_cuda = ctranslate2.get_cuda_device_count() > 0
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise InvalidInputError(
            "device='cuda' but CTranslate2 sees no CUDA device (no GPU, no driver, or a CPU-only build); "
            "use device='cpu' or 'auto'"
        )
    return device


def _check_compute_type(compute_type: str, device: str) -> None:
    """Refuse a compute type that is not one, or that this CTranslate2 build cannot run on ``device``."""
    if compute_type not in COMPUTE_TYPES:
        raise InvalidInputError(
            f"{describe_value(compute_type)} is not a valid compute_type (accepted: {', '.join(COMPUTE_TYPES)})"
        )
    if compute_type in ("default", "auto"):
        return
    ctranslate2 = import_ctranslate2()

    supported = ctranslate2.get_supported_compute_types(device)
    if compute_type not in supported:
        raise InvalidInputError(
            f"compute_type={compute_type!r} is not supported on {device} by this CTranslate2 build "
            f"(supported: {', '.join(sorted(supported))})"
        )

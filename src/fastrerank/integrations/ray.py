"""Batch reranking on Ray Data: score millions of (query, document) pairs with the same scores as ``Reranker``.

:class:`RerankScorer` is a callable class for ``Dataset.map_batches``: each actor loads the model
once, in ``__init__``, and every batch gets a ``score`` column (by default) equal to what
:meth:`fastrerank.Reranker.score` gives for the same rows, up to float32 rounding (how rows share a
padded model batch can move the last bits). :func:`top_n_per_query` then keeps the
best ``n`` rows of each query, with a ``rank`` column::

    import ray
    from fastrerank.integrations.ray import (RerankScorer, actor_pool_size, spread_over_actors, top_n_per_query,
                                             write_parquet_replacing)

    actors = actor_pool_size(num_cpus=2)  # as many as fit: actors x num_cpus <= CPUs - 1, or the job stalls
    pairs = spread_over_actors(ray.data.read_parquet("/jobs/pairs.parquet"), actors)  # query_id, query, doc_id, document
    scored = pairs.map_batches(
        RerankScorer,
        fn_constructor_kwargs={"model": "/shared/models/bge-reranker-v2-m3-int8", "max_length": 512},
        batch_format="pyarrow", batch_size=1024, num_cpus=2,
        compute=ray.data.ActorPoolStrategy(size=actors),
    )
    write_parquet_replacing(top_n_per_query(scored, 10), "/jobs/ranked")  # a re-run replaces ranked/

The model folder is converted once (``fastrerank convert``) and read by every actor; an actor
never converts. :func:`actor_pool_size` and :func:`spread_over_actors` come from _ray_pool.py,
:func:`write_parquet_replacing` from _parquet_output.py. Requires the extra
``pip install 'fastrerank[ray]'``; this module imports Ray only when a function that needs it
runs, and ``import fastrerank`` never imports it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._reranker import Reranker
from .._validation import DEFAULT_MAX_CHUNKS_PER_DOC, DEFAULT_OVERLAP_TOKENS, check_int, check_query, check_rank_options
from ..errors import FastRerankError, InferenceError, InvalidInputError, InvalidTypeError, MissingDependencyError, describe_value
from ._batches import Batch, add_column, column_names, column_values

if TYPE_CHECKING:
    import pyarrow
    from ray.data import Dataset

__all__ = ["RerankScorer", "actor_pool_size", "spread_over_actors", "top_n_per_query", "write_parquet_replacing"]

INSTALL_HINT = "pip install 'fastrerank[ray]'"


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


_absent = [name for name in ("ray", "pyarrow") if _missing(name)]
if _absent:
    raise MissingDependencyError(
        f"fastrerank.integrations.ray needs {' and '.join(_absent)}, which is not installed: {INSTALL_HINT}"
    )


from ._parquet_output import write_parquet_replacing  # noqa: E402  (after the dependency check)
from ._ray_pool import actor_pool_size, spread_over_actors  # noqa: E402


class RerankScorer:
    """Score a Ray Data batch of (query, document) rows; for ``Dataset.map_batches``.

    Two row shapes are accepted:

    * **pairs** (default): one document per row in ``document_column``; adds a float64
      ``score_column``.
    * **candidates** (``candidates_column="..."``): a list of documents per row; adds a column of
      float64 lists aligned with the candidates.

    Every other column (ids, metadata) passes through unchanged. All the (query, document) pairs
    of a batch are scored in one :meth:`Reranker.score_pairs` call, every query's windows batched
    together; how rows fall into batches changes scores by float32 rounding at most.

    Args:
        model: a converted folder (``fastrerank convert``) readable by every actor, e.g. on shared
            storage. A hub id or Hugging Face folder also works but is converted into each node's
            cache on first load, so convert once instead.
        query_column: the column holding the query.
        document_column: the column holding the document (pairs).
        candidates_column: the column holding a list of documents per row; ``None`` (default) for pairs.
        score_column: the column added with the scores.
        id_columns: columns that name a row in error messages; by default ``id`` and ``*_id``.
        worker_column: when given, a column that records which actor scored each row, as
            ``host:pid`` of its process: to check that the work is spread. None (default) adds nothing.
        device: as for :class:`~fastrerank.Reranker`.
        compute_type: as for :class:`~fastrerank.Reranker`.
        max_length: as for :class:`~fastrerank.Reranker`.
        threads: encoder threads per actor; ``None`` uses the CPUs Ray reserved for the actor
            (``num_cpus`` of ``map_batches``, at least 1; every core when it reserved none, or
            outside Ray), ``0`` every core of the machine.
        replicas: as for :class:`~fastrerank.Reranker` (default: one per thread on the CPU, 4 CUDA streams on a GPU).
        batch_tokens: as for :class:`~fastrerank.Reranker`.
        overlap_tokens: as for :meth:`~fastrerank.Reranker.rank`.
        max_chunks_per_doc: as for :meth:`~fastrerank.Reranker.rank`.
        raw: as for :meth:`~fastrerank.Reranker.rank`.
        cache_dir: as for :class:`~fastrerank.Reranker`; a folder on each node.
        local_files_only: as for :class:`~fastrerank.Reranker`.

    Raises (inside the actor, surfacing from the Ray job): :class:`InvalidInputError` for a
    missing column or an empty query, :class:`InvalidTypeError` for a null or non-string value,
    each naming the row by its position in the batch and its id columns.

    Example:
        >>> scorer = RerankScorer("path/to/converted", threads=1)  # doctest: +SKIP
        >>> scorer({"query": np.array(["capital of France"] * 2), "document": np.array(["Paris", "Berlin"])})  # doctest: +SKIP
        {'query': ..., 'document': ..., 'score': array([0.98, 0.01])}
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        query_column: str = "query",
        document_column: str = "document",
        candidates_column: str | None = None,
        score_column: str = "score",
        id_columns: Sequence[str] | None = None,
        worker_column: str | None = None,
        device: str = "auto",
        compute_type: str = "default",
        max_length: int | None = None,
        threads: int | None = None,
        replicas: int | None = None,
        batch_tokens: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> None:
        self._options = check_rank_options(top_n=None, overlap_tokens=overlap_tokens, max_chunks_per_doc=max_chunks_per_doc,
                                           return_documents=False, raw=raw)
        self.query_column = _check_name("query_column", query_column)
        self.documents_column = _check_name("candidates_column" if candidates_column is not None else "document_column",
                                            candidates_column if candidates_column is not None else document_column)
        self.candidates = candidates_column is not None
        self.score_column = _check_name("score_column", score_column)
        if self.score_column in (self.query_column, self.documents_column):
            raise InvalidInputError(f"score_column {score_column!r} must differ from the query and document columns")
        self.worker_column = None if worker_column is None else _check_name("worker_column", worker_column)
        if self.worker_column in (self.query_column, self.documents_column, self.score_column):
            raise InvalidInputError(f"worker_column {worker_column!r} must differ from the query, document and score columns")
        if isinstance(id_columns, str):
            raise InvalidTypeError(f"id_columns must be a list of column names, got str {id_columns!r}; pass [{id_columns!r}]")
        self.id_columns = None if id_columns is None else tuple(_check_name("id_columns[]", name) for name in id_columns)
        cores = _actor_cpus() if threads is None else check_int("threads", threads, minimum=0)
        self.reranker = Reranker(model, device=device, compute_type=compute_type, max_length=max_length, threads=cores,
                                 replicas=replicas, batch_tokens=batch_tokens, cache_dir=cache_dir, local_files_only=local_files_only)

    def __call__(self, batch: Batch) -> Batch:
        """Return ``batch`` with the score column added (same batch format, other columns untouched)."""
        names = column_names(batch)
        for label, name in (("query_column", self.query_column), ("candidates_column" if self.candidates else "document_column",
                                                                  self.documents_column)):
            if name not in names:
                raise InvalidInputError(
                    f"the batch has no column {name!r} ({label}); its columns are {', '.join(map(repr, names))}"
                )
        for label, added in (("score_column", self.score_column), ("worker_column", self.worker_column)):
            if added in names:
                raise InvalidInputError(f"the batch already has a column {added!r}; pass another {label}")
        queries = column_values(batch, self.query_column)
        documents = column_values(batch, self.documents_column)
        scores = self._score_rows(queries, documents, _RowNamer(batch, names, self.id_columns))
        if self.candidates:
            out = add_column(batch, self.score_column, scores)
        else:
            out = add_column(batch, self.score_column, np.array([row[0] for row in scores], dtype=np.float64))
        if self.worker_column is None:
            return out
        return add_column(out, self.worker_column, np.full(len(queries), f"{socket.gethostname()}:{os.getpid()}"))

    def _score_rows(self, queries: list[Any], documents: list[Any], name_row: _RowNamer) -> list[np.ndarray]:
        """One score array per row: every (query, document) pair of the batch in one ``score_pairs`` call."""
        groups: dict[str, tuple[int, list[int], list[str]]] = {}  # query -> (its first row, each doc's row, docs)
        row_docs: list[list[str]] = []
        pairs: list[tuple[str, str]] = []
        for row, (query, docs) in enumerate(zip(queries, documents)):
            query = _check_text(query, name_row, row, self.query_column, query=True)
            docs = self._row_documents(docs, name_row, row)
            _, rows, texts = groups.setdefault(query, (row, [], []))
            rows.extend([row] * len(docs))
            texts.extend(docs)
            row_docs.append(docs)
            pairs.extend((query, doc) for doc in docs)
        try:
            flat = self.reranker.score_pairs(pairs, overlap_tokens=self._options.overlap_tokens,
                                             max_chunks_per_doc=self._options.max_chunks_per_doc, raw=self._options.raw)
        except (InvalidInputError, InferenceError):
            flat = None  # scored again one query at a time below, so that the error names its row
        if flat is not None:
            bounds = np.cumsum([0, *(len(docs) for docs in row_docs)])
            return [flat[start:end] for start, end in zip(bounds[:-1], bounds[1:])]

        out = [np.empty(len(docs), dtype=np.float64) for docs in row_docs]
        filled = [0] * len(row_docs)
        for query, (first_row, rows, texts) in groups.items():
            try:
                scores = self.reranker.score(query, texts, overlap_tokens=self._options.overlap_tokens,
                                             max_chunks_per_doc=self._options.max_chunks_per_doc, raw=self._options.raw)
            except (InvalidInputError, InferenceError) as err:
                raise type(err)(f"{name_row(first_row)}: {err}") from err
            for row, score in zip(rows, scores):
                out[row][filled[row]] = score
                filled[row] += 1
        return out

    def _row_documents(self, docs: object, name_row: _RowNamer, row: int) -> list[str]:
        if not self.candidates:
            return [_check_text(docs, name_row, row, self.documents_column, query=False)]
        if _is_null(docs):
            raise InvalidTypeError(f"{name_row(row)}: {self.documents_column} is null; it must be a list of str")
        if isinstance(docs, (str, bytes)) or not isinstance(docs, (Sequence, np.ndarray)):
            raise InvalidTypeError(f"{name_row(row)}: {self.documents_column} must be a list of str, "
                                   f"got {type(docs).__name__}")
        return [_check_text(doc, name_row, row, f"{self.documents_column}[{index}]", query=False)
                for index, doc in enumerate(docs)]

    def __repr__(self) -> str:
        return f"RerankScorer({self.reranker!r}, score_column={self.score_column!r})"


class _RowNamer:
    """Names a row of a batch for error messages: its position and the values of its id columns."""

    def __init__(self, batch: Batch, names: list[str], id_columns: tuple[str, ...] | None) -> None:
        self._batch = batch
        wanted = id_columns if id_columns is not None else [n for n in names if n == "id" or n.endswith("_id")]
        self._ids = [name for name in wanted if name in names]

    def __call__(self, row: int) -> str:
        ids = ", ".join(f"{name}={describe_value(column_values(self._batch, name)[row])}" for name in self._ids)
        return f"row {row} of the batch" + (f" ({ids})" if ids else "")


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _check_text(value: object, name_row: _RowNamer, row: int, column: str, *, query: bool) -> str:
    if _is_null(value):
        raise InvalidTypeError(f"{name_row(row)}: {column} is null; it must be str")
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name_row(row)}: {column} must be str, got {type(value).__name__} {describe_value(value)}")
    if query:
        try:
            check_query(value)
        except FastRerankError as err:
            raise type(err)(f"{name_row(row)}: {column}: {err}") from err
    return str(value)  # numpy.str_ -> str


def _check_name(parameter: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidTypeError(f"{parameter} must be a column name (str), got {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{parameter} must be a non-empty column name")
    return value


def _actor_cpus() -> int:
    """The CPUs Ray reserved for the current actor or task, at least 1; 0 (every core) when none are, or outside Ray."""
    import ray

    if not ray.is_initialized():
        return 0
    context = ray.get_runtime_context()
    if context.get_actor_id() is None and context.get_task_id() is None:  # the driver: nothing is reserved for it
        return 0
    cpus = context.get_assigned_resources().get("CPU", 0)
    return max(1, int(cpus)) if cpus else 0


def top_n_per_query(
    ds: Dataset,
    n: int,
    query_key: str = "query_id",
    *,
    score_column: str = "score",
    order_key: str | None = None,
    rank_column: str = "rank",
    num_partitions: int | None = None,
) -> Dataset:
    """The best ``n`` rows of each query, by ``score_column`` descending, with a 1-based ``rank_column``.

    Ties are broken by ``order_key`` ascending when given: a row position column to keep input
    order, or a document id. Without it, tied rows keep the order in which Ray hands a group's
    rows over, which Ray's shuffle does not promise to be the input order, so pass ``order_key``
    for results that are the same on every run. (Identical documents tie exactly only when they
    were scored in the same batch; otherwise the last bits of their scores decide.)
    ``num_partitions`` is passed to ``Dataset.groupby`` (recent Ray versions; ``None`` keeps
    Ray's default).

    Example:
        >>> top_n_per_query(scored, 10, "query_id", order_key="doc_id").write_parquet("ranked/")  # doctest: +SKIP
    """
    n = check_int("n", n, minimum=1)
    for parameter, value in (("query_key", query_key), ("score_column", score_column), ("rank_column", rank_column)):
        _check_name(parameter, value)
    if order_key is not None:
        _check_name("order_key", order_key)
    grouped = ds.groupby(query_key) if num_partitions is None else ds.groupby(
        query_key, num_partitions=check_int("num_partitions", num_partitions, minimum=1))
    top_n = functools.partial(_top_n_of_group, n=n, score_column=score_column, order_key=order_key,
                              rank_column=rank_column)
    return grouped.map_groups(top_n, batch_format="pyarrow")


def _top_n_of_group(group: pyarrow.Table, *, n: int, score_column: str, order_key: str | None,
                    rank_column: str) -> pyarrow.Table:
    """Sort one query's rows (stable: equal keys keep their order) and keep the first ``n``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in (score_column, *([order_key] if order_key else [])):
        if name not in group.column_names:
            raise InvalidInputError(f"the dataset has no column {name!r}; its columns are {', '.join(group.column_names)}")
    if rank_column in group.column_names:
        raise InvalidInputError(f"the dataset already has a column {rank_column!r}; pass another rank_column")
    score_type = group.schema.field(score_column).type
    if not (pa.types.is_floating(score_type) or pa.types.is_integer(score_type)):
        raise InvalidTypeError(f"column {score_column!r} must hold one number per row, got {score_type} "
                               "(candidate lists: explode them into one row per document first)")
    keys = [(score_column, "descending")] + ([(order_key, "ascending")] if order_key else [])
    order = pc.sort_indices(group, sort_keys=keys, null_placement="at_end")[:n]
    top = group.take(order)
    return top.append_column(rank_column, pa.array(np.arange(1, len(top) + 1), type=pa.int64()))

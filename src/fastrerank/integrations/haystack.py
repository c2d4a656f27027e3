"""A Haystack 2.x component that reranks with fastrerank: ``FastRerankRanker``.

Put it after a retriever in a pipeline::

    from haystack import Pipeline
    from fastrerank.integrations.haystack import FastRerankRanker

    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store, top_k=20))
    pipeline.add_component("ranker", FastRerankRanker("BAAI/bge-reranker-v2-m3", top_k=3))
    pipeline.connect("retriever.documents", "ranker.documents")
    pipeline.run({"retriever": {"query": query}, "ranker": {"query": query}})

Requires ``pip install 'fastrerank[haystack]'`` (``haystack-ai``); ``import fastrerank`` never
imports Haystack.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .._reranker import DEFAULT_MODEL, Reranker
from .._validation import DEFAULT_MAX_CHUNKS_PER_DOC, DEFAULT_OVERLAP_TOKENS, check_query
from ..errors import InvalidInputError, InvalidTypeError
from ..results import Ranking
from ._source import RerankerSource, check_settings, check_top, missing_framework

try:
    from haystack import Document, component, default_from_dict, default_to_dict
except ModuleNotFoundError as err:
    raise missing_framework(err, module="haystack", package="haystack-ai", extra="haystack") from err

__all__ = ["FastRerankRanker"]


@component
class FastRerankRanker:
    """Rank documents by relevance to a query, best first, keeping ``top_k``, with ``Document.score`` set.

    The score is what :meth:`fastrerank.Reranker.rank` gives for the document's ``content``; the
    documents returned are copies (the caller's are not changed), ties keep input order. A
    document without text content is refused. ``warm_up`` loads the model (pipelines call it);
    ``run_async`` runs the ranking in a worker thread, never on the event loop. ``to_dict`` names
    the model by its path or hub id (a given :class:`~fastrerank.Reranker` by its folder).

    Args:
        model: a converted folder, a Hugging Face folder or hub id (loaded into fastrerank's
            process-wide cache, shared with :func:`fastrerank.rank`), or a
            :class:`~fastrerank.Reranker` to use as it is.
        top_k: documents to keep (10 by default, as Haystack's rankers); ``None`` keeps them all.
        device: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        compute_type: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        max_length: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        cache_dir: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        local_files_only: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        overlap_tokens: as for :meth:`~fastrerank.Reranker.rank`.
        max_chunks_per_doc: as for :meth:`~fastrerank.Reranker.rank`.
        raw: as for :meth:`~fastrerank.Reranker.rank`.

    Example:
        >>> ranker = FastRerankRanker("path/to/converted", top_k=2)  # doctest: +SKIP
        >>> ranker.warm_up()  # doctest: +SKIP
        >>> ranker.run(query="capital of France", documents=[Document(content="Paris")])["documents"]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Reranker = DEFAULT_MODEL,
        *,
        top_k: int | None = 10,
        device: str = "auto",
        compute_type: str = "default",
        max_length: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> None:
        self.top_k, self._options = check_settings(top_name="top_k", top=top_k, overlap_tokens=overlap_tokens,
                                                   max_chunks_per_doc=max_chunks_per_doc, raw=raw)
        self._source = RerankerSource(model, device=device, compute_type=compute_type, max_length=max_length,
                                      cache_dir=cache_dir, local_files_only=local_files_only)

    def warm_up(self) -> None:
        """Load the model now, rather than at the first run."""
        self._source.load()

    def to_dict(self) -> dict[str, Any]:
        """The component as a dict, for pipeline serialisation."""
        settings = self._source.settings()
        return default_to_dict(self, model=settings["model"], top_k=self.top_k, device=settings["device"],
                               compute_type=settings["compute_type"], max_length=settings["max_length"],
                               overlap_tokens=self._options.overlap_tokens,
                               max_chunks_per_doc=self._options.max_chunks_per_doc, raw=self._options.raw,
                               cache_dir=settings["cache_dir"], local_files_only=settings["local_files_only"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FastRerankRanker:
        """The component :meth:`to_dict` described."""
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """Rank ``documents`` for ``query``; ``top_k`` overrides the component's for this run.

        :returns: ``{"documents": [...]}``, best first, each with ``score`` set.
        """
        texts, keep = self._inputs(query, documents, top_k)
        return {"documents": _ranked(documents, self._source.rank(query, texts, keep, self._options)) if texts else []}

    @component.output_types(documents=list[Document])
    async def run_async(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """:meth:`run` with the ranking in a worker thread."""
        texts, keep = self._inputs(query, documents, top_k)
        ranking = await self._source.arank(query, texts, keep, self._options) if texts else None
        return {"documents": _ranked(documents, ranking) if ranking is not None else []}

    def _inputs(self, query: object, documents: object, top_k: object) -> tuple[list[str], int | None]:
        check_query(query)
        keep = self.top_k if top_k is None else check_top("top_k", top_k)
        if not isinstance(documents, list):
            raise InvalidTypeError(f"documents must be a list of haystack Documents, got {type(documents).__name__}")
        texts = []
        for index, document in enumerate(documents):
            if not isinstance(document, Document):
                raise InvalidTypeError(f"documents[{index}] must be a haystack Document, got {type(document).__name__}")
            if document.content is None:
                raise InvalidInputError(f"documents[{index}] has no text content (content is None); "
                                        "FastRerankRanker ranks text only")
            texts.append(document.content)
        return texts, keep


def _ranked(documents: list[Document], ranking: Ranking) -> list[Document]:
    return [dataclasses.replace(documents[item.index], score=item.score) for item in ranking]

"""A LlamaIndex node postprocessor that reranks with fastrerank: ``FastRerankPostprocessor``.

Add it to a query engine's ``node_postprocessors`` to rerank what the retriever found::

    from fastrerank.integrations.llama_index import FastRerankPostprocessor

    query_engine = index.as_query_engine(
        similarity_top_k=20,
        node_postprocessors=[FastRerankPostprocessor("BAAI/bge-reranker-v2-m3", top_n=3)],
    )

Requires ``pip install 'fastrerank[llama-index]'`` (``llama-index-core``); ``import fastrerank``
never imports LlamaIndex.
"""

from __future__ import annotations

import os

from .._reranker import DEFAULT_MODEL, Reranker
from .._validation import DEFAULT_MAX_CHUNKS_PER_DOC, DEFAULT_OVERLAP_TOKENS, RankOptions, check_query
from ..errors import InvalidInputError, InvalidTypeError
from ..results import Ranking
from ._source import RerankerSource, check_settings, missing_framework

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ModuleNotFoundError as err:
    raise missing_framework(err, module="llama_index", package="llama-index-core", extra="llama-index") from err

__all__ = ["FastRerankPostprocessor"]


class FastRerankPostprocessor(BaseNodePostprocessor):
    """Keep the ``top_n`` nodes most relevant to the query, best first, with ``NodeWithScore.score`` set.

    The score is what :meth:`fastrerank.Reranker.rank` gives for the node's content as LlamaIndex
    embeds it (``metadata_mode``, as LlamaIndex's own rerankers read it). The nodes returned are
    new ``NodeWithScore`` objects around the same nodes; ties keep retrieval order. The async path
    (``apostprocess_nodes``, ``aquery``) runs the ranking in a worker thread.

    Args:
        model: a converted folder, a Hugging Face folder or hub id (loaded on first use into
            fastrerank's process-wide cache, shared with :func:`fastrerank.rank`), or a
            :class:`~fastrerank.Reranker` to use as it is.
        top_n: nodes to keep (2 by default, as LlamaIndex's rerankers); ``None`` keeps them all, reordered.
        device: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        compute_type: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        max_length: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        cache_dir: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        local_files_only: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        overlap_tokens: as for :meth:`~fastrerank.Reranker.rank`.
        max_chunks_per_doc: as for :meth:`~fastrerank.Reranker.rank`.
        raw: as for :meth:`~fastrerank.Reranker.rank`.
        metadata_mode: which metadata is part of the text ranked.

    Example:
        >>> postprocessor = FastRerankPostprocessor("path/to/converted", top_n=3)  # doctest: +SKIP
        >>> postprocessor.postprocess_nodes(nodes, query_str="what is a panda?")  # doctest: +SKIP
    """

    top_n: int | None = Field(description="Nodes to keep, best first; None keeps all.")
    overlap_tokens: int
    max_chunks_per_doc: int
    raw: bool
    metadata_mode: MetadataMode
    _source: RerankerSource = PrivateAttr()
    _options: RankOptions = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | Reranker = DEFAULT_MODEL,
        *,
        top_n: int | None = 2,
        device: str = "auto",
        compute_type: str = "default",
        max_length: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
    ) -> None:
        # Checked here, into fastrerank's errors, before pydantic sees the values.
        top, options = check_settings(top_name="top_n", top=top_n, overlap_tokens=overlap_tokens,
                                      max_chunks_per_doc=max_chunks_per_doc, raw=raw)
        if not isinstance(metadata_mode, MetadataMode):
            raise InvalidTypeError(f"metadata_mode must be a llama_index MetadataMode, got {type(metadata_mode).__name__}")
        source = RerankerSource(model, device=device, compute_type=compute_type, max_length=max_length,
                                cache_dir=cache_dir, local_files_only=local_files_only)
        # pydantic's BaseModel.__init__ sets the fields (mypy sees them only with pydantic's plugin).
        super().__init__(  # type: ignore[call-arg]
            top_n=top, overlap_tokens=options.overlap_tokens, max_chunks_per_doc=options.max_chunks_per_doc,
            raw=options.raw, metadata_mode=metadata_mode,
        )
        self._source = source
        self._options = options

    @classmethod
    def class_name(cls) -> str:
        return "FastRerankPostprocessor"

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        query, texts = self._inputs(nodes, query_bundle)
        return _ranked(nodes, self._source.rank(query, texts, self.top_n, self._options)) if texts else []

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._inputs(nodes, query_bundle)
        return _ranked(nodes, await self._source.arank(query, texts, self.top_n, self._options)) if texts else []

    def _inputs(self, nodes: object, query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise InvalidInputError("FastRerankPostprocessor needs the query: pass query_bundle or query_str")
        query = check_query(query_bundle.query_str)
        if not isinstance(nodes, list):
            raise InvalidTypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
        for index, node in enumerate(nodes):
            if not isinstance(node, NodeWithScore):
                raise InvalidTypeError(f"nodes[{index}] must be a NodeWithScore, got {type(node).__name__}")
        return query, [node.node.get_content(metadata_mode=self.metadata_mode) for node in nodes]


def _ranked(nodes: list[NodeWithScore], ranking: Ranking) -> list[NodeWithScore]:
    return [NodeWithScore(node=nodes[item.index].node, score=item.score) for item in ranking]

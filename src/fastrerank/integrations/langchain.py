"""A LangChain document compressor that reranks with fastrerank: ``FastRerankCompressor``.

Use it wherever LangChain takes a ``BaseDocumentCompressor``, for example to rerank what a
retriever found::

    from langchain_classic.retrievers import ContextualCompressionRetriever
    from fastrerank.integrations.langchain import FastRerankCompressor

    retriever = ContextualCompressionRetriever(
        base_compressor=FastRerankCompressor("BAAI/bge-reranker-v2-m3", top_n=3),
        base_retriever=vector_store.as_retriever(search_kwargs={"k": 20}),
    )
    documents = retriever.invoke("what is a panda?")  # best 3, metadata["relevance_score"] set

Requires ``pip install 'fastrerank[langchain]'`` (``langchain-core``); ``import fastrerank`` never
imports LangChain.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._reranker import DEFAULT_MODEL, Reranker
from .._validation import DEFAULT_MAX_CHUNKS_PER_DOC, DEFAULT_OVERLAP_TOKENS, RankOptions, check_query
from ..errors import InvalidTypeError
from ..results import Ranking
from ._source import RerankerSource, check_settings, missing_framework

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import ConfigDict, PrivateAttr
except ModuleNotFoundError as err:
    raise missing_framework(err, module="langchain_core", package="langchain-core", extra="langchain") from err

__all__ = ["FastRerankCompressor"]


class FastRerankCompressor(BaseDocumentCompressor):
    """Keep the ``top_n`` documents most relevant to the query, best first, each scored in ``metadata["relevance_score"]``.

    The score is what :meth:`fastrerank.Reranker.rank` gives for the document's ``page_content``;
    the documents returned are copies (the caller's are not changed), ties keep retrieval order.
    ``acompress_documents`` runs the ranking in a worker thread, never on the event loop.

    Args:
        model: a converted folder, a Hugging Face folder or hub id (loaded on first use into
            fastrerank's process-wide cache, shared with :func:`fastrerank.rank`), or a
            :class:`~fastrerank.Reranker` to use as it is.
        top_n: documents to keep; ``None`` keeps them all, reordered.
        device: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        compute_type: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        max_length: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        cache_dir: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        local_files_only: as for :class:`~fastrerank.Reranker`, when ``model`` is not one.
        overlap_tokens: as for :meth:`~fastrerank.Reranker.rank`.
        max_chunks_per_doc: as for :meth:`~fastrerank.Reranker.rank`.
        raw: as for :meth:`~fastrerank.Reranker.rank`.

    Example:
        >>> compressor = FastRerankCompressor("path/to/converted", top_n=2)  # doctest: +SKIP
        >>> compressor.compress_documents([Document(page_content="Paris"), Document(page_content="Berlin")],
        ...                               "capital of France")  # doctest: +SKIP
        [Document(metadata={'relevance_score': 0.98}, page_content='Paris'), ...]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    top_n: int | None
    overlap_tokens: int
    max_chunks_per_doc: int
    raw: bool
    _source: RerankerSource = PrivateAttr()
    _options: RankOptions = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | Reranker = DEFAULT_MODEL,
        *,
        top_n: int | None = 3,
        device: str = "auto",
        compute_type: str = "default",
        max_length: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        max_chunks_per_doc: int = DEFAULT_MAX_CHUNKS_PER_DOC,
        raw: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> None:
        # Checked here, into fastrerank's errors, before pydantic sees the values.
        top, options = check_settings(top_name="top_n", top=top_n, overlap_tokens=overlap_tokens,
                                      max_chunks_per_doc=max_chunks_per_doc, raw=raw)
        source = RerankerSource(model, device=device, compute_type=compute_type, max_length=max_length,
                                cache_dir=cache_dir, local_files_only=local_files_only)
        # pydantic's BaseModel.__init__ sets the fields (mypy sees them only with pydantic's plugin).
        super().__init__(  # type: ignore[call-arg]
            top_n=top, overlap_tokens=options.overlap_tokens, max_chunks_per_doc=options.max_chunks_per_doc,
            raw=options.raw,
        )
        self._source = source
        self._options = options

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The ``top_n`` most relevant ``documents`` for ``query``, best first, with ``metadata["relevance_score"]``."""
        texts = _texts(documents, query)
        return _ranked(documents, self._source.rank(query, texts, self.top_n, self._options)) if texts else []

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """:meth:`compress_documents` with the ranking in a worker thread."""
        texts = _texts(documents, query)
        return _ranked(documents, await self._source.arank(query, texts, self.top_n, self._options)) if texts else []


def _texts(documents: object, query: object) -> list[str]:
    check_query(query)
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise InvalidTypeError(f"documents must be a sequence of langchain Documents, got {type(documents).__name__}")
    for index, document in enumerate(documents):
        if not isinstance(document, Document):
            raise InvalidTypeError(f"documents[{index}] must be a langchain Document, got {type(document).__name__}")
    return [document.page_content for document in documents]


def _ranked(documents: Sequence[Document], ranking: Ranking) -> list[Document]:
    return [documents[item.index].model_copy(update={"metadata": {**documents[item.index].metadata,
                                                                  "relevance_score": item.score}})
            for item in ranking]

"""fastrerank.integrations.langchain: FastRerankCompressor in a real LangChain retriever chain."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

import fastrerank
from fastrerank import InvalidInputError, InvalidTypeError, Reranker
from fastrerank.integrations.langchain import FastRerankCompressor

from .integration_helpers import QUERY, TEXTS, assert_missing_framework_is_named, expected_ranking


class ListRetriever(BaseRetriever):
    """A tiny in-memory retriever: every query finds the same documents."""

    documents: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return list(self.documents)


def _documents() -> list[Document]:
    return [Document(page_content=text, metadata={"source": f"doc-{i}"}) for i, text in enumerate(TEXTS)]


def _found(documents: list[Document]) -> list[tuple[str, float]]:
    return [(document.page_content, document.metadata["relevance_score"]) for document in documents]


def test_retriever_chain_keeps_top_n_with_rank_scores(converted, tiny_reranker: Reranker) -> None:  # type: ignore[no-untyped-def]
    documents = _documents()
    retriever = ContextualCompressionRetriever(
        base_compressor=FastRerankCompressor(str(converted("tiny")), top_n=4), base_retriever=ListRetriever(documents=documents)
    )
    try:
        found = retriever.invoke(QUERY)
        expected = expected_ranking(tiny_reranker, TEXTS, 4)
        assert [text for text, _ in _found(found)] == [text for text, _ in expected]
        np.testing.assert_allclose([score for _, score in _found(found)], [score for _, score in expected], rtol=0, atol=1e-6)
        assert [d.metadata["source"] for d in found] == [f"doc-{TEXTS.index(text)}" for text, _ in expected]
        assert all("relevance_score" not in d.metadata for d in documents)  # the retriever's documents are untouched
        assert _found(asyncio.run(retriever.ainvoke(QUERY))) == _found(found)
        assert len(fastrerank._api._cache) == 1  # the model is the process-wide one
    finally:
        fastrerank.clear_cache()


def test_cache_dir_and_local_files_only_reach_the_shared_model(hf_models, tiny_reranker: Reranker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    compressor = FastRerankCompressor(hf_models["tiny"], top_n=3, compute_type="float32", cache_dir=tmp_path / "mine",
                                      local_files_only=True)
    try:
        found = _found(list(compressor.compress_documents(_documents(), QUERY)))
        expected = expected_ranking(tiny_reranker, TEXTS, 3)
        assert [text for text, _ in found] == [text for text, _ in expected]
        np.testing.assert_allclose([score for _, score in found], [score for _, score in expected], rtol=0, atol=1e-5)
        assert [reranker.model_path.parent for reranker in fastrerank._api._cache.values()] == [tmp_path / "mine"]
    finally:
        fastrerank.clear_cache()


def test_a_given_reranker_gives_exactly_its_rank_scores(tiny_reranker: Reranker) -> None:
    compressor = FastRerankCompressor(tiny_reranker, top_n=None, raw=True)
    found = compressor.compress_documents(_documents(), QUERY)
    assert _found(list(found)) == [(TEXTS[item.index], item.score) for item in tiny_reranker.rank(QUERY, TEXTS, raw=True)]
    assert compressor.compress_documents([], QUERY) == []


def test_async_compression_ranks_off_the_loop_thread(tiny_reranker: Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real_rank = Reranker.rank

    def spy(self: Reranker, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread())
        return real_rank(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Reranker, "rank", spy)
    found = asyncio.run(FastRerankCompressor(tiny_reranker, top_n=2).acompress_documents(_documents(), QUERY))
    assert _found(list(found)) == expected_ranking(tiny_reranker, TEXTS, 2)
    assert threads[0] is not threading.main_thread()


def test_bad_arguments(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"^top_n must be >= 1, got 0$"):
        FastRerankCompressor(tiny_reranker, top_n=0)
    with pytest.raises(InvalidTypeError, match=r"^model must be a path, a hub id or a fastrerank.Reranker, got int$"):
        FastRerankCompressor(5)  # type: ignore[arg-type]
    for option in ({"device": "cpu"}, {"cache_dir": "x"}, {"local_files_only": True}):
        with pytest.raises(InvalidInputError, match=r"^device, compute_type, max_length, cache_dir and local_files_only apply "
                                                    r"to a model path or hub id; a Reranker passed as model keeps its own$"):
            FastRerankCompressor(tiny_reranker, **option)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match=r"^cache_dir must be a folder path \(str or os\.PathLike\) or None, got int$"):
        FastRerankCompressor("some/model", cache_dir=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match=r"^local_files_only must be a bool, got str 'no'$"):
        FastRerankCompressor("some/model", local_files_only="no")  # type: ignore[arg-type]
    compressor = FastRerankCompressor(tiny_reranker)
    with pytest.raises(InvalidTypeError, match=r"^documents\[1\] must be a langchain Document, got str$"):
        compressor.compress_documents([Document(page_content="a"), "b"], QUERY)  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match=r"^query must not be only whitespace$"):
        compressor.compress_documents(_documents(), " ")


def test_without_langchain_the_import_names_the_extra() -> None:
    assert_missing_framework_is_named(framework="langchain_core", module="fastrerank.integrations.langchain",
                                      extra="langchain")

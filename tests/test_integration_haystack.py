"""fastrerank.integrations.haystack: FastRerankRanker in a real Haystack pipeline."""

from __future__ import annotations

import asyncio
import os

# Haystack reads this once, at import: no telemetry (network) from the tests.
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from haystack import Document, Pipeline  # noqa: E402
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402

import fastrerank  # noqa: E402
from fastrerank import InvalidInputError, InvalidTypeError, Reranker  # noqa: E402
from fastrerank.integrations.haystack import FastRerankRanker  # noqa: E402

from .integration_helpers import QUERY, TEXTS, assert_missing_framework_is_named, expected_ranking  # noqa: E402


def _documents() -> list[Document]:
    return [Document(content=text, meta={"source": i}) for i, text in enumerate(TEXTS)]


def _found(documents: list[Document]) -> list[tuple[str, float]]:
    return [(document.content, document.score) for document in documents]  # type: ignore[misc]


def _retriever() -> InMemoryBM25Retriever:
    store = InMemoryDocumentStore()
    store.write_documents(_documents())
    return InMemoryBM25Retriever(store, top_k=len(TEXTS), scale_score=False)


def _pipeline(ranker: FastRerankRanker) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("retriever", _retriever())
    pipeline.add_component("ranker", ranker)
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def _run(pipeline: Pipeline, top_k: int | None = None) -> list[Document]:
    ranker_input: dict[str, object] = {"query": QUERY} if top_k is None else {"query": QUERY, "top_k": top_k}
    return pipeline.run({"retriever": {"query": QUERY}, "ranker": ranker_input})["ranker"]["documents"]  # type: ignore[no-any-return]


def test_pipeline_keeps_top_k_with_rank_scores(converted, tiny_reranker: Reranker) -> None:  # type: ignore[no-untyped-def]
    # BM25 finds the documents sharing a word with the query; the ranker orders them.
    pipeline = _pipeline(FastRerankRanker(str(converted("tiny")), top_k=4))
    try:
        texts = [document.content for document in _retriever().run(query=QUERY)["documents"]]
        assert len(texts) > 4
        expected = expected_ranking(tiny_reranker, texts, 4)
        found = _found(_run(pipeline))
        assert [text for text, _ in found] == [text for text, _ in expected]
        np.testing.assert_allclose([score for _, score in found], [score for _, score in expected], rtol=0, atol=1e-6)
        assert _found(_run(pipeline, top_k=2)) == found[:2]  # run's top_k overrides the component's
        async_found = asyncio.run(pipeline.run_async({"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}))
        assert _found(async_found["ranker"]["documents"]) == found
        assert len(fastrerank._api._cache) == 1  # the model is the process-wide one
    finally:
        fastrerank.clear_cache()


def test_warm_up_loads_the_model_into_the_shared_cache(converted) -> None:  # type: ignore[no-untyped-def]
    ranker = FastRerankRanker(str(converted("tiny")))
    try:
        assert len(fastrerank._api._cache) == 0  # making the component loads nothing
        ranker.warm_up()
        assert [reranker.model_path for reranker in fastrerank._api._cache.values()] == [converted("tiny")]
    finally:
        fastrerank.clear_cache()


def test_serialisation_round_trip(converted) -> None:  # type: ignore[no-untyped-def]
    folder = str(converted("tiny"))
    ranker = FastRerankRanker(folder, top_k=3, overlap_tokens=5, raw=True)
    data = ranker.to_dict()
    assert data == {"type": "fastrerank.integrations.haystack.FastRerankRanker",
                    "init_parameters": {"model": folder, "top_k": 3, "device": "auto", "compute_type": "default",
                                        "max_length": None, "overlap_tokens": 5, "max_chunks_per_doc": 1024, "raw": True,
                                        "cache_dir": None, "local_files_only": False}}
    assert FastRerankRanker.from_dict(data).to_dict() == data
    try:
        pipeline = _pipeline(ranker)
        loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["fastrerank.integrations.haystack"])
        assert _found(_run(loaded)) == _found(_run(pipeline))
    finally:
        fastrerank.clear_cache()


def test_cache_dir_and_local_files_only_are_kept_and_reach_the_model(hf_models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ranker = FastRerankRanker(hf_models["tiny"], compute_type="float32", cache_dir=tmp_path / "mine", local_files_only=True)
    parameters = ranker.to_dict()["init_parameters"]
    assert (parameters["cache_dir"], parameters["local_files_only"]) == (str(tmp_path / "mine"), True)
    try:
        FastRerankRanker.from_dict(ranker.to_dict()).warm_up()
        assert [reranker.model_path.parent for reranker in fastrerank._api._cache.values()] == [tmp_path / "mine"]
    finally:
        fastrerank.clear_cache()
    with pytest.raises(InvalidTypeError, match=r"^cache_dir must be a folder path \(str or os\.PathLike\) or None, got int$"):
        FastRerankRanker("some/model", cache_dir=5)  # type: ignore[arg-type]


def test_a_given_reranker_gives_exactly_its_rank_scores(tiny_reranker: Reranker) -> None:
    ranker = FastRerankRanker(tiny_reranker, top_k=None)
    documents = _documents()
    found = ranker.run(query=QUERY, documents=documents)["documents"]
    assert _found(found) == expected_ranking(tiny_reranker, TEXTS, None)
    assert [document.id for document in found] == [documents[TEXTS.index(text)].id for text, _ in _found(found)]
    assert all(document.score is None for document in documents)  # the caller's documents are untouched
    assert _found(asyncio.run(ranker.run_async(query=QUERY, documents=documents))["documents"]) == _found(found)
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}
    assert ranker.to_dict()["init_parameters"]["model"] == str(tiny_reranker.model_path)


def test_bad_arguments(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"^top_k must be >= 1, got 0$"):
        FastRerankRanker(tiny_reranker, top_k=0)
    ranker = FastRerankRanker(tiny_reranker)
    with pytest.raises(InvalidInputError, match=r"^top_k must be >= 1, got -1$"):
        ranker.run(query=QUERY, documents=_documents(), top_k=-1)
    with pytest.raises(InvalidInputError, match=r"^documents\[1\] has no text content \(content is None\)"):
        ranker.run(query=QUERY, documents=[Document(content="a"), Document(blob=None)])
    with pytest.raises(InvalidTypeError, match=r"^documents\[0\] must be a haystack Document, got str$"):
        ranker.run(query=QUERY, documents=["a"])  # type: ignore[list-item]
    with pytest.raises(InvalidTypeError, match=r"^query must be str, got NoneType$"):
        ranker.run(query=None, documents=_documents())  # type: ignore[arg-type]


def test_without_haystack_the_import_names_the_extra() -> None:
    assert_missing_framework_is_named(framework="haystack", module="fastrerank.integrations.haystack", extra="haystack")

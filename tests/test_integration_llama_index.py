"""fastrerank.integrations.llama_index: FastRerankPostprocessor in a real LlamaIndex query (no LLM, no network)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

import fastrerank
from fastrerank import InvalidInputError, InvalidTypeError, Reranker
from fastrerank.integrations.llama_index import FastRerankPostprocessor

from .integration_helpers import QUERY, TEXTS, assert_missing_framework_is_named, expected_ranking


def _nodes() -> list[TextNode]:
    # Metadata excluded from what is embedded, so the text ranked is the node's text.
    return [TextNode(text=text, id_=f"node-{i}", metadata={"source": i}, excluded_embed_metadata_keys=["source"])
            for i, text in enumerate(TEXTS)]


def _found(nodes: list[NodeWithScore]) -> list[tuple[str, float]]:
    return [(node.node.get_content(metadata_mode=MetadataMode.EMBED), node.score) for node in nodes]  # type: ignore[misc]


def test_query_engine_over_an_index_keeps_top_n_with_rank_scores(converted, tiny_reranker: Reranker) -> None:  # type: ignore[no-untyped-def]
    # A mock embedding model (every text the same vector) retrieves every node; the postprocessor
    # alone orders them. The NoText synthesizer returns the nodes without calling the (mock) LLM.
    index = VectorStoreIndex(_nodes(), embed_model=MockEmbedding(embed_dim=8))
    engine = RetrieverQueryEngine(
        retriever=index.as_retriever(similarity_top_k=len(TEXTS)),
        response_synthesizer=NoText(llm=MockLLM()),
        node_postprocessors=[FastRerankPostprocessor(str(converted("tiny")), top_n=3)],
    )
    try:
        response = engine.query(QUERY)
        found = _found(response.source_nodes)
        expected = expected_ranking(tiny_reranker, TEXTS, 3)
        assert [text for text, _ in found] == [text for text, _ in expected]
        np.testing.assert_allclose([score for _, score in found], [score for _, score in expected], rtol=0, atol=1e-6)
        assert [node.node.node_id for node in response.source_nodes] == [f"node-{TEXTS.index(t)}" for t, _ in expected]
        assert _found(asyncio.run(engine.aquery(QUERY)).source_nodes) == found
        assert len(fastrerank._api._cache) == 1  # the model is the process-wide one
    finally:
        fastrerank.clear_cache()


def test_cache_dir_and_local_files_only_reach_the_shared_model(hf_models, tiny_reranker: Reranker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    postprocessor = FastRerankPostprocessor(hf_models["tiny"], top_n=3, compute_type="float32", cache_dir=tmp_path / "mine",
                                            local_files_only=True)
    try:
        found = _found(postprocessor.postprocess_nodes([NodeWithScore(node=node) for node in _nodes()], query_str=QUERY))
        expected = expected_ranking(tiny_reranker, TEXTS, 3)
        assert [text for text, _ in found] == [text for text, _ in expected]
        np.testing.assert_allclose([score for _, score in found], [score for _, score in expected], rtol=0, atol=1e-5)
        assert [reranker.model_path.parent for reranker in fastrerank._api._cache.values()] == [tmp_path / "mine"]
    finally:
        fastrerank.clear_cache()
    with pytest.raises(InvalidTypeError, match=r"^local_files_only must be a bool, got int 1$"):
        FastRerankPostprocessor("some/model", local_files_only=1)  # type: ignore[arg-type]


def test_a_given_reranker_gives_exactly_its_rank_scores(tiny_reranker: Reranker) -> None:
    nodes = [NodeWithScore(node=node, score=0.5) for node in _nodes()]
    postprocessor = FastRerankPostprocessor(tiny_reranker, top_n=None)
    found = postprocessor.postprocess_nodes(nodes, query_str=QUERY)
    assert _found(found) == expected_ranking(tiny_reranker, TEXTS, None)
    assert all(node.score == 0.5 for node in nodes)  # the caller's NodeWithScore objects are untouched
    assert _found(asyncio.run(postprocessor.apostprocess_nodes(nodes, query_str=QUERY))) == _found(found)
    assert postprocessor.postprocess_nodes([], query_str=QUERY) == []


def test_bad_arguments(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"^top_n must be >= 1, got 0$"):
        FastRerankPostprocessor(tiny_reranker, top_n=0)
    with pytest.raises(InvalidTypeError, match=r"^max_chunks_per_doc must be an int, got str '2'$"):
        FastRerankPostprocessor(tiny_reranker, max_chunks_per_doc="2")  # type: ignore[arg-type]
    postprocessor = FastRerankPostprocessor(tiny_reranker)
    nodes = [NodeWithScore(node=node) for node in _nodes()]
    with pytest.raises(InvalidInputError, match=r"^FastRerankPostprocessor needs the query: pass query_bundle or query_str$"):
        postprocessor.postprocess_nodes(nodes)
    with pytest.raises(InvalidTypeError, match=r"^nodes\[0\] must be a NodeWithScore, got TextNode$"):
        postprocessor.postprocess_nodes(_nodes(), query_str=QUERY)  # type: ignore[arg-type]


def test_without_llama_index_the_import_names_the_extra() -> None:
    assert_missing_framework_is_named(framework="llama_index", module="fastrerank.integrations.llama_index",
                                      extra="llama-index")

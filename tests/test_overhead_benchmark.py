"""fastrerank's own overhead per 1,000 documents: tokenize + chunk + batch + head (pytest-benchmark).

The encoder call is replaced by a stub returning zeros, so the timing is everything fastrerank
adds around CTranslate2; a second benchmark runs the same call end to end on the tiny fixture.
CI runs this file as a smoke test with ``--benchmark-disable`` (each benchmark runs once, no
timing is asserted); to measure::

    pytest tests/test_overhead_benchmark.py --benchmark-only --benchmark-columns=min,median,max
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from fastrerank import Reranker
from fastrerank._engine import runtime as runtime_module
from fastrerank.testing import make_corpus

DOCUMENTS = 1000


@pytest.fixture(scope="module")
def corpus() -> tuple[str, list[str]]:
    """1,000 documents of 1-60 sentences (about 10-600 tokens); one in ten is long enough to be chunked."""
    rng = random.Random(0)
    sentences = make_corpus(num_sentences=4000, seed=1)
    docs = [" ".join(rng.choices(sentences, k=rng.randint(1, 12 if i % 10 else 60))) for i in range(DOCUMENTS)]
    return "what is the best search engine for machine learning", docs


@pytest.fixture(scope="module")
def reranker(converted):  # type: ignore[no-untyped-def]
    with Reranker(converted("tiny"), device="cpu", threads=1) as model:
        yield model


def test_overhead_without_the_encoder(benchmark, reranker: Reranker, corpus: tuple[str, list[str]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hidden = reranker.metadata.hidden_size
    calls: list[int] = []

    def stub(encoder: object, rows: Sequence[Sequence[int]], template: object = None) -> np.ndarray:
        calls.append(len(rows))
        return np.zeros((len(rows), hidden), dtype=np.float32)

    monkeypatch.setattr(runtime_module, "_first_token_states", stub)
    query, docs = corpus
    scores = benchmark(reranker.score, query, docs)
    assert scores.shape == (DOCUMENTS,)
    assert sum(calls) >= DOCUMENTS  # chunking made at least one row per document


def test_end_to_end_on_the_tiny_model(benchmark, reranker: Reranker, corpus: tuple[str, list[str]]) -> None:
    query, docs = corpus
    ranking = benchmark.pedantic(reranker.rank, args=(query, docs), kwargs={"top_n": 10}, rounds=3, warmup_rounds=1)
    assert len(ranking.results) == 10
    assert ranking.tokens > 0


def test_corpus_has_chunked_documents(reranker: Reranker, corpus: tuple[str, list[str]]) -> None:
    """The corpus exercises the chunking path: some documents exceed one window."""
    query, docs = corpus
    window = reranker.max_length - len(reranker._text.encode(query)) - 4
    lengths = [len(ids) for ids in reranker._text.encode_many(docs, max_tokens=None)]
    assert max(lengths) > window
    assert Path(reranker.model_path).is_dir()

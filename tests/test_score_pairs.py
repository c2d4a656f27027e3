"""``score_pairs``: many (query, document) pairs batched together, each scored as ``rank`` scores it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fastrerank
from fastrerank import InferenceError, InvalidInputError, InvalidTypeError, Reranker
from fastrerank.testing import make_corpus

from .reference import reference_chunked
from .reliability_helpers import control_stripping_copy, nan_head_copy


def _texts(count: int, seed: int, words: int) -> list[str]:
    sentences = make_corpus(count * words, seed=seed)
    return [" ".join(sentences[i * words : (i + 1) * words]) for i in range(count)]


# Queries of several lengths (one longer than the 48 tokens the short model keeps, so it is cut),
# documents from empty to many windows long, and a pair repeated: on the 64-position model every
# query has its own window size.
QUERIES = ["apple fruit health", "machine learning model search", " ".join(_texts(4, seed=3, words=4)), "panda"]
DOCUMENTS = _texts(7, seed=13, words=6) + ["", "short one", "panda " * 70]


def _pairs() -> list[tuple[str, str]]:
    pairs = [(query, doc) for query in QUERIES for doc in DOCUMENTS]
    pairs.insert(3, pairs[20])  # the same pair twice, and queries interleaved
    pairs.append(pairs[0])
    return pairs


def _per_query(reranker: Reranker, pairs: list[tuple[str, str]], **options: object) -> np.ndarray:
    """The reference path: one ``rank`` call per query, scores put back in pair order."""
    scores = np.empty(len(pairs))
    for query in dict.fromkeys(query for query, _ in pairs):
        rows = [i for i, (q, _) in enumerate(pairs) if q == query]
        ranking = reranker.rank(query, [pairs[i][1] for i in rows], **options)  # type: ignore[arg-type]
        for item in ranking:
            scores[rows[item.index]] = item.score
    return scores


@pytest.mark.parametrize("batch_tokens", [1, None, 100_000])
def test_score_pairs_equals_rank_per_query(converted, batch_tokens: int | None) -> None:  # type: ignore[no-untyped-def]
    # batch_tokens=1 runs every window alone in both paths (no padding anywhere); the default and a
    # single huge batch pad windows differently in the two paths, which float32 tolerates to 1e-6.
    reranker = Reranker(converted("short"), threads=1, batch_tokens=batch_tokens)
    pairs = _pairs()
    scores = reranker.score_pairs(pairs)
    assert scores.dtype == np.float64 and scores.shape == (len(pairs),)
    np.testing.assert_allclose(scores, _per_query(reranker, pairs), rtol=0, atol=1e-6)
    assert np.ptp(scores) > 0.1
    assert scores[3] == scores[21] and scores[-1] == scores[0]


@pytest.fixture(scope="module")
def one_row_reranker(converted):  # type: ignore[no-untyped-def]
    """The short model running every window alone, so that no padding separates two paths' results."""
    with Reranker(converted("short"), threads=1, batch_tokens=1) as reranker:
        yield reranker


@pytest.mark.parametrize("options", [{"raw": True}, {"overlap_tokens": 0, "max_chunks_per_doc": 2, "raw": True},
                                     {"overlap_tokens": 5, "max_chunks_per_doc": 1}])
def test_score_pairs_options_follow_rank(one_row_reranker: Reranker, options: dict[str, object]) -> None:
    pairs = _pairs()
    np.testing.assert_array_equal(one_row_reranker.score_pairs(pairs, **options),  # type: ignore[arg-type]
                                  _per_query(one_row_reranker, pairs, **options))


def test_score_pairs_equals_reference_window_rule(short_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    pairs = [(query, doc) for query in QUERIES[:2] for doc in DOCUMENTS]
    scores = short_reranker.score_pairs(pairs, overlap_tokens=5, raw=True)
    expected = np.concatenate([reference_chunked(hf_models["short"], query, DOCUMENTS, max_length=64, overlap=5,
                                                  max_chunks=1024)[0] for query in QUERIES[:2]])
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_windows_of_all_queries_share_batches(converted) -> None:  # type: ignore[no-untyped-def]
    """Under a budget that holds every window, all pairs run in one batch, not one batch per query."""
    reranker = Reranker(converted("tiny"), threads=1, batch_tokens=1_000_000)
    pairs = [(query, doc) for query in QUERIES for doc in DOCUMENTS[:4]]
    seen: list[tuple[int, int]] = []
    reranker.score_pairs(pairs, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == 1 and seen[0][0] == seen[0][1] >= len(pairs)


def test_empty_pairs(tiny_reranker: Reranker) -> None:
    for empty in ([], (), np.empty((0, 2), dtype=str)):
        scores = tiny_reranker.score_pairs(empty)
        assert scores.dtype == np.float64 and scores.shape == (0,)


def test_pairs_in_other_containers(tiny_reranker: Reranker) -> None:
    pairs = [("apple fruit", "an apple a day"), ("panda", "bamboo forest")]
    expected = tiny_reranker.score_pairs(pairs)
    for other in ([list(pair) for pair in pairs], tuple(pairs), np.array(pairs)):
        np.testing.assert_array_equal(tiny_reranker.score_pairs(other), expected)


@pytest.mark.parametrize(("pairs", "error", "message"), [
    ("query, doc", InvalidTypeError, r"^pairs must be a sequence of \(query, document\) pairs, got str$"),
    ({"q": "d"}, InvalidTypeError, r"^pairs must be a sequence of \(query, document\) pairs, got dict$"),
    ((pair for pair in [("q", "d")]), InvalidTypeError, r"^pairs must be a sequence .* got generator$"),
    ([("q", "d"), "qd"], InvalidTypeError, r"^pairs\[1\] must be a \(query, document\) pair, got str$"),
    ([("q", "d"), None], InvalidTypeError, r"^pairs\[1\] must be a \(query, document\) pair, got NoneType$"),
    ([("q",)], InvalidInputError, r"^pairs\[0\] must hold 2 items \(query, document\), got 1$"),
    ([("q", "d", "e")], InvalidInputError, r"^pairs\[0\] must hold 2 items \(query, document\), got 3$"),
    ([("q", "d"), ("q", None)], InvalidTypeError, r"^pairs\[1\]\[1\] \(the document\) must be str, got NoneType$"),
    ([("q", "d"), (b"q", "d")], InvalidTypeError, r"^pairs\[1\]\[0\] \(the query\) must be str, got bytes$"),
    ([("q", "d"), ("", "d")], InvalidInputError, r"^pairs\[1\]\[0\] \(the query\): query must be a non-empty string$"),
    ([("  ", "d")], InvalidInputError, r"^pairs\[0\]\[0\] \(the query\): query must not be only whitespace$"),
])
def test_bad_pairs_are_refused(tiny_reranker: Reranker, pairs: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        tiny_reranker.score_pairs(pairs)  # type: ignore[arg-type]


def test_bad_options_are_refused(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"^overlap_tokens must be in \[0, 80\], got 81$"):
        tiny_reranker.score_pairs([("q", "d")], overlap_tokens=81)
    with pytest.raises(InvalidTypeError, match=r"^raw must be a bool, got int 1$"):
        tiny_reranker.score_pairs([("q", "d")], raw=1)  # type: ignore[arg-type]


def test_errors_name_the_pair(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stripping = Reranker(control_stripping_copy(converted("tiny"), tmp_path / "stripping"))
    with pytest.raises(InvalidInputError, match=r"^pairs\[1\]\[0\] produced no tokens: '\\u200b'$"):
        stripping.score_pairs([("apple", "a doc"), ("\u200b", "a doc"), ("\u200b", "b doc")])
    narrow = Reranker(converted("short"), max_length=16)  # a 12-token query leaves W = 16 - 12 - 4 = 0
    with pytest.raises(InvalidInputError, match=r"^pairs\[1\]\[0\]: max_length=16 leaves no room .* expected >= 1\)$"):
        narrow.score_pairs([("apple", "doc"), (" ".join(_texts(3, seed=5, words=3)), "doc")])


def test_non_finite_score_names_the_pair(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Reranker(nan_head_copy(converted("tiny"), tmp_path / "nan-head"), threads=1) as reranker, \
            pytest.raises(InferenceError, match=r"non-finite score for pairs\[0\] \(compute_type=float32\)"):
        reranker.score_pairs([("apple", "a doc"), ("pear", "b doc")])


def test_module_level_score_pairs_shares_the_rank_cache(converted) -> None:  # type: ignore[no-untyped-def]
    folder = str(converted("tiny"))
    pairs = [(query, doc) for query in QUERIES[:2] for doc in DOCUMENTS[:5]]
    try:
        scores = fastrerank.score_pairs(pairs, model=folder)
        fastrerank.rank(QUERIES[0], DOCUMENTS[:5], model=folder)
        assert len(fastrerank._api._cache) == 1
        np.testing.assert_array_equal(scores, Reranker(folder).score_pairs(pairs))
        fastrerank.clear_cache()
        np.testing.assert_array_equal(fastrerank.score_pairs(pairs, model=folder, raw=True),
                                      Reranker(folder).score_pairs(pairs, raw=True))
    finally:
        fastrerank.clear_cache()

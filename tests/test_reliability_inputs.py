"""Every row of docs/reliability.md, matrix A (arguments of rank, score and score_pairs), and goals G1-G3.

Each bad argument gets its exact error type and message; each odd but valid input gets a real
outcome (its score against the transformers reference, or against an equivalent input). The
property test (G1) feeds arbitrary Unicode, surrogates and NUL included, up to 50k characters.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastrerank import (
    FastRerankError,
    InferenceError,
    InvalidInputError,
    InvalidTypeError,
    Reranker,
)
from fastrerank._engine import runtime as runtime_module
from fastrerank.testing import make_corpus

from .reference import (
    load_reference,
    reference_logits_for_ids,
    sigmoid,
    windows_by_rule,
)
from .reliability_helpers import control_stripping_copy, nan_head_copy

QUERY = "apple fruit"
DOCS = ["the apple is a fruit", "Paris is a city", "机器学习 data model", "banana 🍕 pizza"]


def _query_ids(folder: Path, text: str) -> list[int]:
    tokenizer, _ = load_reference(str(folder))
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --- rows that raise -------------------------------------------------------------------------

BAD_CALLS = {
    "empty query": ({"query": ""}, InvalidInputError, r"^query must be a non-empty string$"),
    "whitespace query": ({"query": " \t\n"}, InvalidInputError, r"^query must not be only whitespace$"),
    "None query": ({"query": None}, InvalidTypeError, r"^query must be str, got NoneType$"),
    "bytes query": ({"query": b"apple"}, InvalidTypeError, r"^query must be str, got bytes$"),
    "int query": ({"query": 3}, InvalidTypeError, r"^query must be str, got int$"),
    "documents is a str": ({"documents": "abc"}, InvalidTypeError, r"^documents must be a sequence of str, got str$"),
    "documents is a dict": ({"documents": {"a": "b"}}, InvalidTypeError, r"^documents must be a sequence of str, got dict$"),
    "documents is a generator": ({"documents": (d for d in DOCS)}, InvalidTypeError, r"^documents must be a sequence of str, got generator$"),
    "documents is a set": ({"documents": {"a"}}, InvalidTypeError, r"^documents must be a sequence of str, got set$"),
    "documents is bytes": ({"documents": b"abc"}, InvalidTypeError, r"^documents must be a sequence of str, got bytes$"),
    "documents is None": ({"documents": None}, InvalidTypeError, r"^documents must be a sequence of str, got NoneType$"),
    "doc None": ({"documents": ["a", "b", "c", None]}, InvalidTypeError, r"^documents\[3\] must be str, got NoneType$"),
    "doc int": ({"documents": [1]}, InvalidTypeError, r"^documents\[0\] must be str, got int$"),
    "doc bytes": ({"documents": ["a", b"b"]}, InvalidTypeError, r"^documents\[1\] must be str, got bytes$"),
    "doc object": ({"documents": [{"text": "a"}]}, InvalidTypeError, r"^documents\[0\] must be str, got dict$"),
    "top_n 0": ({"top_n": 0}, InvalidInputError, r"^top_n must be >= 1, got 0$"),
    "top_n negative": ({"top_n": -2}, InvalidInputError, r"^top_n must be >= 1, got -2$"),
    "top_n True": ({"top_n": True}, InvalidTypeError, r"^top_n must be an int, got bool True$"),
    "top_n 3.0": ({"top_n": 3.0}, InvalidTypeError, r"^top_n must be an int, got float 3.0$"),
    "top_n '3'": ({"top_n": "3"}, InvalidTypeError, r"^top_n must be an int, got str '3'$"),
    "overlap 81": ({"overlap_tokens": 81}, InvalidInputError, r"^overlap_tokens must be in \[0, 80\], got 81$"),
    "overlap -1": ({"overlap_tokens": -1}, InvalidInputError, r"^overlap_tokens must be in \[0, 80\], got -1$"),
    "overlap True": ({"overlap_tokens": True}, InvalidTypeError, r"^overlap_tokens must be an int, got bool True$"),
    "overlap False": ({"overlap_tokens": False}, InvalidTypeError, r"^overlap_tokens must be an int, got bool False$"),
    "max_chunks 0": ({"max_chunks_per_doc": 0}, InvalidInputError, r"^max_chunks_per_doc must be >= 1, got 0$"),
    "max_chunks -3": ({"max_chunks_per_doc": -3}, InvalidInputError, r"^max_chunks_per_doc must be >= 1, got -3$"),
    "max_chunks True": ({"max_chunks_per_doc": True}, InvalidTypeError, r"^max_chunks_per_doc must be an int, got bool True$"),
    "max_chunks 2.0": ({"max_chunks_per_doc": 2.0}, InvalidTypeError, r"^max_chunks_per_doc must be an int, got float 2.0$"),
    "return_documents 1": ({"return_documents": 1}, InvalidTypeError, r"^return_documents must be a bool, got int 1$"),
}
RANK_ONLY = ("top_n", "return_documents")  # score() takes neither


@pytest.mark.parametrize(("case", "method"), [
    (case, method) for case in sorted(BAD_CALLS) for method in ("rank", "score")
    if method == "rank" or not set(RANK_ONLY) & set(BAD_CALLS[case][0])
])
def test_bad_argument_exact_error(case: str, method: str, tiny_reranker: Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
    changes, error, message = BAD_CALLS[case]
    monkeypatch.setattr(runtime_module, "_first_token_states", _model_must_not_run)
    call = {"query": QUERY, "documents": DOCS, **changes}
    args = (call.pop("query"), call.pop("documents"))
    with pytest.raises(error, match=message) as caught:
        getattr(tiny_reranker, method)(*args, **call)
    assert isinstance(caught.value, FastRerankError)


def _model_must_not_run(encoder: object, rows: object, template: object = None) -> None:
    raise AssertionError("the model was called")


def test_long_bad_value_is_cut_to_80_characters(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidTypeError) as caught:
        tiny_reranker.rank(QUERY, DOCS, top_n="9" * 500)
    shown = str(caught.value).split("got str ", 1)[1]
    assert len(shown) == 80 and shown.endswith("...")


def test_query_with_no_tokens_is_refused(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The fixture tokenizer keeps control characters; XLM-R's own normalizer deletes them.
    folder = control_stripping_copy(converted("tiny"), tmp_path / "strips-controls")
    with Reranker(folder, threads=1) as reranker:
        with pytest.raises(InvalidInputError, match=r"^query produced no tokens: '\\x00\\x07\\x1f'$"):
            reranker.rank("\x00\x07\x1f", DOCS)
        with pytest.raises(InvalidInputError, match=r"^query produced no tokens: '\\u200b\\u200b'$"):
            reranker.rank("\u200b\u200b", DOCS)  # XLM-R's normalizer deletes U+200B too
        with pytest.raises(InvalidInputError, match="query produced no tokens"):
            reranker.score("\x00", [])
        assert len(reranker.rank("a\x00", DOCS)) == len(DOCS)
        assert len(reranker.rank("apple\u200b", ["\u200b", "\x00", "a doc"])) == 3  # 0-token documents are scored


def test_window_too_small_names_the_computed_window(converted) -> None:  # type: ignore[no-untyped-def]
    # overlap_tokens is capped at W // 4, so it can never reach the window; the window itself can
    # vanish when max_length is tiny and the query takes its 3/4.
    with Reranker(converted("short"), threads=1, max_length=16) as reranker, \
            pytest.raises(InvalidInputError, match=r"window W = max_length - len\(query\) - 4 = 0; expected >= 1"):
        reranker.rank("apple " * 40, DOCS)


def test_non_finite_logit_raises_inference_error(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = nan_head_copy(converted("tiny"), tmp_path / "nan-head")
    with Reranker(folder, threads=1) as reranker:
        with pytest.raises(InferenceError, match=r"non-finite score for documents\[0\] \(compute_type=float32\)"):
            reranker.rank(QUERY, DOCS)
        with pytest.raises(InferenceError, match="non-finite"):
            reranker.score(QUERY, DOCS, raw=True)


# --- rows that give a result -----------------------------------------------------------------

def test_empty_docs_never_call_the_model(tiny_reranker: Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "_first_token_states", _model_must_not_run)
    ranking = tiny_reranker.rank(QUERY, [])
    assert (ranking.results, ranking.tokens, ranking.query_truncated) == ((), 0, False)
    assert tiny_reranker.score(QUERY, ()).shape == (0,)


def test_long_query_is_cut_with_one_warning(tiny_reranker: Reranker, hf_models: dict[str, Path],
                                            caplog: pytest.LogCaptureFixture) -> None:
    query = " ".join(make_corpus(200, seed=3))
    q = _query_ids(hf_models["tiny"], query)
    assert len(q) > 384
    with caplog.at_level(logging.WARNING, logger="fastrerank"):
        ranking = tiny_reranker.rank(query, ["the apple is a fruit"])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "query of over 384 tokens cut to 384" in warnings[0].getMessage()
    assert ranking.query_truncated
    d = _query_ids(hf_models["tiny"], "the apple is a fruit")
    expected = sigmoid(reference_logits_for_ids(hf_models["tiny"], [[0, *q[:384], 2, 2, *d, 2]]))[0]
    assert ranking[0].score == pytest.approx(expected, abs=1e-5)
    assert ranking.tokens == 384 + 4 + len(d)
    assert not tiny_reranker.rank("apple", ["x"]).query_truncated


def test_sequences_other_than_list_are_accepted(tiny_reranker: Reranker) -> None:
    class Docs(Sequence[str]):
        iterations = 0

        def __len__(self) -> int:
            return len(DOCS)

        def __getitem__(self, index):  # type: ignore[no-untyped-def]
            return DOCS[index]

        def __iter__(self) -> Iterator[str]:
            Docs.iterations += 1
            return iter(DOCS)

    expected = tiny_reranker.score(QUERY, DOCS)
    np.testing.assert_array_equal(tiny_reranker.score(QUERY, tuple(DOCS)), expected)
    np.testing.assert_array_equal(tiny_reranker.score(QUERY, np.array(DOCS, dtype=object)), expected)  # type: ignore[arg-type]
    assert tiny_reranker.rank(QUERY, np.array(DOCS, dtype=object)) == tiny_reranker.rank(QUERY, DOCS)  # type: ignore[arg-type]
    docs = Docs()
    np.testing.assert_array_equal(tiny_reranker.score(QUERY, docs), expected)
    assert Docs.iterations == 1  # materialised once


def test_empty_and_blank_docs_are_scored_not_dropped(tiny_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    docs = ["apple", "", "   ", "\n\t", "fruit"]
    ranking = tiny_reranker.rank(QUERY, docs)
    assert sorted(item.index for item in ranking) == list(range(5))
    q = _query_ids(hf_models["tiny"], QUERY)
    empty_row_score = sigmoid(reference_logits_for_ids(hf_models["tiny"], [[0, *q, 2, 2, 2]]))[0]
    assert tiny_reranker.score(QUERY, docs)[1] == pytest.approx(empty_row_score, abs=1e-5)
    assert np.isfinite(tiny_reranker.score(QUERY, docs)).all()


def test_lone_surrogates_score_as_replacement_character(tiny_reranker: Reranker) -> None:
    docs = ["a\ud800b", "fine doc", "\udfff", "pair \U0001f600 ok"]
    replaced = [doc.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd") for doc in docs]
    scores = tiny_reranker.score("query \udc00", docs)
    np.testing.assert_array_equal(scores, tiny_reranker.score("query \ufffd", replaced))
    # One bad character does not change, let alone fail, its neighbours.
    assert scores[1] == pytest.approx(tiny_reranker.score("query \udc00", ["fine doc"])[0], abs=1e-6)


@pytest.mark.parametrize("text", [
    "nul\x00inside", "\u202eright-to-left override\u202c", "机器学习是人工智能", "emoji 😀👩‍💻🇩🇪",
    "e\u0301\u0301\u0301 combining" + "\u0301" * 500, "\ufeffbom and zwj\u200d", "\x00", "\u200b",
    "ﷺ ﬁ ① ℌ", "\U0010ffff\U000e0001",
])
def test_unusual_unicode_scores_normally(text: str, tiny_reranker: Reranker) -> None:
    as_doc = tiny_reranker.score(QUERY, [text, "apple"])
    as_query = tiny_reranker.score(text, ["apple", text])
    for scores in (as_doc, as_query):
        assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert as_doc[1] == pytest.approx(tiny_reranker.score(QUERY, ["apple"])[0], abs=1e-6)


def test_top_n_none_above_and_numpy(tiny_reranker: Reranker) -> None:
    full = tiny_reranker.rank(QUERY, DOCS)
    assert len(full) == 4
    assert tiny_reranker.rank(QUERY, DOCS, top_n=100).results == full.results
    assert tiny_reranker.rank(QUERY, DOCS, top_n=np.int64(2)).results == full.results[:2]
    assert tiny_reranker.rank(QUERY, DOCS, top_n=1).results == full.results[:1]


def test_duplicates_and_ties_keep_input_order(tiny_reranker: Reranker) -> None:
    docs = ["pizza", "apple fruit", "pizza", "apple fruit", "pizza"]
    ranking = tiny_reranker.rank(QUERY, docs)
    by_index = {item.index: item.score for item in ranking}
    assert by_index[0] == by_index[2] == by_index[4] and by_index[1] == by_index[3]
    order = [item.index for item in ranking]
    group_a, group_b = [1, 3], [0, 2, 4]
    expected = group_a + group_b if by_index[1] > by_index[0] else group_b + group_a
    assert order == expected


def test_chunk_rule_holds_when_overlap_exceeds_a_quarter_window(short_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    # 64 positions and a long query: W = 64 - 48 - 4 = 12, so overlap_tokens=80 is capped at 3.
    query = " ".join(make_corpus(40, seed=5))
    doc = " ".join(make_corpus(30, seed=6))
    q = _query_ids(hf_models["short"], query)[:48]
    d = _query_ids(hf_models["short"], doc)
    spans = windows_by_rule(len(d), len(q), 64, 80, 1024)
    ranking = short_reranker.rank(query, [doc], overlap_tokens=80)
    assert ranking.tokens == sum(len(q) + 4 + (end - start) for start, end in spans)
    rows = [[0, *q, 2, 2, *d[start:end], 2] for start, end in spans]
    expected = sigmoid(reference_logits_for_ids(hf_models["short"], rows).max())
    assert ranking[0].score == pytest.approx(expected, abs=1e-5)


# --- G1: property test -----------------------------------------------------------------------

_ODD = ["\x00", "\ud800", "\udfff", "\u202e", "\u200d", "\ufeff", "\u0301", "😀", "\U0001f469", "机", " ", "\n", "\x1f",
        "<s>", "</s>", "<pad>", "<unk>", "<mask>"]  # special-token strings are plain text too
_pieces = st.one_of(
    st.characters(exclude_categories=()),  # everything, surrogates included
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    st.sampled_from(_ODD),
)
_short_text = st.lists(_pieces, max_size=60).map("".join)
_long_text = st.builds(lambda part, times: (part * times)[:50_000], st.lists(_pieces, min_size=1, max_size=12).map("".join),
                       st.integers(100, 10_000))
_text = st.one_of(_short_text, _short_text, _short_text, _long_text)
_ALLOWED_QUERY_ERRORS = ("query must be a non-empty string", "query must not be only whitespace", "query produced no tokens")


@pytest.mark.timeout(300)
@settings(max_examples=max(2_000, settings.default.max_examples))  # G1: 2,000 in CI; the nightly profile's 20,000
@given(
    query=_text,
    docs=st.lists(_text, max_size=6),
    top_n=st.none() | st.integers(1, 8),
    overlap=st.integers(0, 80),
    max_chunks=st.integers(1, 6),
)
def test_g1_arbitrary_input_never_crashes(short_reranker: Reranker, query: str, docs: list[str], top_n: int | None,
                                         overlap: int, max_chunks: int) -> None:
    options = {"overlap_tokens": overlap, "max_chunks_per_doc": max_chunks}
    try:
        ranking = short_reranker.rank(query, docs, top_n, **options)
    except InvalidInputError as err:
        assert str(err).startswith(_ALLOWED_QUERY_ERRORS), err
        assert query == "" or query.isspace() or "no tokens" in str(err)
        return
    scores = np.array([item.score for item in ranking])
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    indices = [item.index for item in ranking]
    assert len(indices) == (len(docs) if top_n is None else min(top_n, len(docs)))
    assert len(set(indices)) == len(indices) and set(indices) <= set(range(len(docs)))
    keys = [(-item.score, item.index) for item in ranking]
    assert keys == sorted(keys)
    again = short_reranker.rank(query, docs, top_n, **options)
    assert again == ranking  # bitwise: floats compared with ==
    if top_n is None and docs:
        full = short_reranker.score(query, docs, **options)
        assert [full[i] for i in indices] == list(scores)


# --- G2: batch invariance --------------------------------------------------------------------

def test_g2_score_does_not_depend_on_batch_neighbours(tiny_reranker: Reranker) -> None:
    rng = random.Random(2)
    corpus = make_corpus(600, seed=9)
    worst = 0.0
    for _ in range(200):
        doc = " ".join(rng.sample(corpus, rng.randint(1, 4)))
        others = [" ".join(rng.sample(corpus, rng.randint(0, 4))) for _ in range(rng.randint(1, 8))]
        query = rng.choice(corpus)[: rng.randint(5, 80)]
        alone = tiny_reranker.score(query, [doc])[0]
        together = tiny_reranker.score(query, others[:3] + [doc] + others[3:])[min(3, len(others))]
        worst = max(worst, abs(alone - together))
    print(f"G2: 200 sets, largest |score alone - score in a batch| = {worst:.2e}")
    assert worst <= 1e-5, worst


# --- G3: threads -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("threads", [1, 2], ids=["one replica", "two replicas"])
def test_g3_sixteen_threads_bitwise_identical(threads: int, converted) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    corpus = make_corpus(400, seed=4)
    calls = []
    for i in range(50):
        docs = [" ".join(rng.sample(corpus, rng.randint(0, 3))) for _ in range(rng.choice([1, 2, 3, 8]))]
        if i % 10 == 0:
            docs.append(" ".join(corpus[:60]))  # a few documents of several windows
        calls.append((rng.choice(corpus)[:40] or "q", docs, 1 + i % 4))
    with Reranker(converted("tiny"), threads=threads, replicas=threads) as reranker:
        def call(item: tuple[str, list[str], int]) -> object:
            query, docs, max_chunks = item
            return reranker.rank(query, docs, max_chunks_per_doc=max_chunks, return_documents=True)

        sequential = [call(item) for item in calls]
        start = threading.Barrier(16)

        def worker(_: int) -> list[object]:
            start.wait()
            return [call(item) for item in calls]

        for _ in range(10):  # docs/reliability.md, goal G3: the first plan asked 20 repeats; 10 fit 2 shared cores (16 x 50 x 10 = 8,000 calls)
            with ThreadPoolExecutor(16) as pool:
                results = list(pool.map(worker, range(16)))
            for per_thread in results:
                assert per_thread == sequential

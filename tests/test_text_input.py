"""Queries and documents are plain text, and a query is cut before it is tokenized.

A special-token string in the text (``<pad>``, ``<s>x</s>``, ``</s>``, ``<unk>``, ``<mask>``) gets
the ordinary pieces SentencePiece gives it, never a control id: the rows run must equal those of
transformers' ``split_special_tokens=True`` over a vocabulary that no text can turn into a special
token (``reference.plain_text_tokenizer_folder``), and the scores the reference model's on those
rows. A query is cut before tokenizing like documents, so a 10-million-character query costs what
a query of the limit costs, with ``query_truncated`` still exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fastrerank import Reranker
from fastrerank.testing import make_corpus

from .reference import load_reference, reference_logits_for_ids, reference_pair_logits, sigmoid, windows_by_rule
from .reliability_helpers import memory_child

QUERY = "apple fruit"
SPECIAL_TEXTS = ["hello <pad> world", "<s>x</s>", "</s>", "<unk>", "<mask>", "a<pad>b<s>c</s>d", "<mask> fruit<unk>"]
CONTROL_IDS = {0, 1, 2, 999}  # <s>, <pad>, </s> and the fixture's <mask>; <unk> is also every unknown character


@pytest.fixture
def rows_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[int]]]:
    """Every row a Reranker hands CTranslate2 during the test (patched in the engine, undone after)."""
    from fastrerank._engine import runtime

    seen: list[list[int]] = []
    original = runtime._first_token_states

    def recording(encoder: object, rows: list[np.ndarray], template: object = None) -> np.ndarray:
        seen.extend(np.asarray(row).tolist() for row in rows)
        return original(encoder, rows, template)

    monkeypatch.setattr(runtime, "_first_token_states", recording)
    yield seen


def _plain_ids(folder: Path, text: str) -> list[int]:
    tokenizer, _ = load_reference(str(folder), True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
@pytest.mark.parametrize("role", ["document", "query"])
def test_special_token_strings_are_plain_text(text: str, role: str, tiny_reranker: Reranker, hf_models: dict[str, Path],
                                             rows_run: list[list[int]]) -> None:
    folder = hf_models["tiny"]
    query, doc = (QUERY, text) if role == "document" else (text + " fruit", "the apple is a fruit")
    tokenizer, _ = load_reference(str(folder), True)
    expected_row = tokenizer(query, doc, truncation="only_second", max_length=tiny_reranker.max_length)["input_ids"]
    score = tiny_reranker.score(query, [doc])[0]
    assert rows_run == [expected_row]
    inner = expected_row[1:-1]
    assert not CONTROL_IDS & set(inner[: inner.index(2)] + inner[inner.index(2) + 2 :]), expected_row
    expected = sigmoid(reference_pair_logits(folder, query, [doc], tiny_reranker.max_length, plain_text=True))[0]
    assert score == pytest.approx(expected, abs=1e-4)


def test_hello_pad_world_scores_like_the_reference(tiny_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    # Before, "<pad>" became the pad id: CTranslate2 numbers its position, transformers skips it,
    # and the score was 0.08 away from the reference's on the same ids.
    folder = hf_models["tiny"]
    expected = sigmoid(reference_pair_logits(folder, QUERY, ["hello <pad> world"], 512, plain_text=True))[0]
    assert tiny_reranker.score(QUERY, ["hello <pad> world"])[0] == pytest.approx(expected, abs=1e-4)
    assert tiny_reranker.score("hello <pad> world", ["apple"])[0] == pytest.approx(
        sigmoid(reference_pair_logits(folder, "hello <pad> world", ["apple"], 512, plain_text=True))[0], abs=1e-4)


def test_same_ids_as_transformers_split_special_tokens_where_it_gives_no_control_id(
        tiny_reranker: Reranker, hf_models: dict[str, Path], rows_run: list[list[int]]) -> None:
    # The fixture's <mask> is an added token only, not a vocabulary piece: there transformers'
    # split_special_tokens=True alone already gives plain pieces, and fastrerank the same ids.
    from transformers import AutoTokenizer

    split = AutoTokenizer.from_pretrained(str(hf_models["tiny"]), split_special_tokens=True)
    docs = ["<mask>", "a <mask>b", "hello world"]
    tiny_reranker.score(QUERY, docs)
    expected = [split(QUERY, doc, truncation="only_second", max_length=512)["input_ids"] for doc in docs]
    assert all(999 not in row for row in expected)
    assert sorted(rows_run) == sorted(expected)


@pytest.mark.parametrize("special", ["<pad>", "</s>", "<s>x</s>", " <mask>"])
def test_special_token_string_across_a_window_boundary(special: str, short_reranker: Reranker,
                                                        hf_models: dict[str, Path], rows_run: list[list[int]]) -> None:
    # 64 positions: W = 64 - len(q) - 4 tokens a window. The special string is put so that its
    # pieces straddle the end of the first window, in a document long enough to be cut before
    # it is tokenized (max_chunks_per_doc=2).
    folder = hf_models["short"]
    tokenizer, _ = load_reference(str(folder), True)
    words = " ".join(make_corpus(400, seed=8))
    q = _plain_ids(folder, QUERY)
    window = 64 - len(q) - 4
    offsets = tokenizer(words, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    at = offsets[window - 3][1]  # two tokens before the first window ends
    doc = words[:at] + special + words[at:]
    d = _plain_ids(folder, doc)
    assert not CONTROL_IDS & set(d)
    spans = windows_by_rule(len(d), len(q), 64, 80, 2)
    expected_rows = [[0, *q, 2, 2, *d[start:end], 2] for start, end in spans]
    assert len(expected_rows) == 2 and d[window - 3 : window + 1] != _plain_ids(folder, words)[window - 3 : window + 1]

    ranking = short_reranker.rank(QUERY, [doc], max_chunks_per_doc=2)
    assert sorted(rows_run) == sorted(expected_rows)
    assert ranking.tokens == sum(map(len, expected_rows))
    expected = sigmoid(reference_logits_for_ids(folder, expected_rows).max())
    assert ranking[0].score == pytest.approx(expected, abs=1e-4)


# --- a query is cut before it is tokenized ----------------------------------------------------

_HUGE_QUERY = """
folder = sys.argv[1]
reranker = Reranker(folder, threads=1)
doc = "the apple is a fruit"
queries = {
    "words": ("apple fruit data model text city river " * 250_001)[:10_000_000],
    "no-spaces": ("机器学习人工智能研究开发" * 833_334)[:10_000_000],
}
reranker.rank("apple fruit", [doc])  # warm-up
out = {}
for kind, query in queries.items():
    ranking, delta, peak, cpu = measure(lambda: reranker.rank(query, [doc]))
    out[kind] = {"delta": delta, "cpu": cpu, "score": ranking[0].score, "tokens": ranking.tokens,
                 "truncated": ranking.query_truncated}
print(json.dumps(out))
"""
_QUERY_PREFIXES = {  # the first 20,000 characters of each query above: far more than 384 tokens
    "words": ("apple fruit data model text city river " * 600)[:20_000],
    "no-spaces": ("机器学习人工智能研究开发" * 2000)[:20_000],
}


@pytest.mark.slow
def test_huge_query_is_cut_before_tokenizing(converted, hf_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    # Before, the whole query was tokenized and then cut: +0.8 GiB (words) to +2 GiB (no spaces)
    # of peak RSS for 10 million characters.
    folder = hf_models["tiny"]
    result = memory_child(_HUGE_QUERY, converted("tiny"))
    tokenizer, _ = load_reference(str(folder))
    d = tokenizer("the apple is a fruit", add_special_tokens=False)["input_ids"]
    for kind, measured in result.items():
        print(f"10M-character query ({kind}): +{measured['delta']:.1f} MiB peak RSS, {measured['cpu']:.2f} s CPU")
        q = tokenizer(_QUERY_PREFIXES[kind], add_special_tokens=False)["input_ids"]
        assert len(q) > 384
        expected = sigmoid(reference_logits_for_ids(folder, [[0, *q[:384], 2, 2, *d, 2]]))[0]
        assert measured["truncated"] is True
        assert measured["tokens"] == 384 + 4 + len(d)
        assert measured["score"] == pytest.approx(expected, abs=1e-5), kind
        assert measured["delta"] < 100, json.dumps(result)


@pytest.mark.parametrize("extra", [0, 1])
def test_query_truncated_is_exact_at_the_limit(extra: int, tiny_reranker: Reranker, hf_models: dict[str, Path]) -> None:
    # A long query of exactly 384 tokens is not truncated, one of 385 is; both long enough (over
    # 4 characters a token) to be cut before tokenizing.
    tokenizer, _ = load_reference(str(hf_models["tiny"]))
    words = " ".join(["apple"] * 2000)  # one token a word
    offsets = tokenizer(words, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    query = words[: offsets[383 + extra][1]]
    q = tokenizer(query, add_special_tokens=False)["input_ids"]
    assert len(q) == 384 + extra and len(query) > 4 * 385
    ranking = tiny_reranker.rank(query, ["apple"])
    assert ranking.query_truncated is bool(extra)
    assert ranking.tokens == 384 + 4 + len(tokenizer("apple", add_special_tokens=False)["input_ids"])

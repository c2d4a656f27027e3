"""Long texts under a real SentencePiece normalizer: the cut before tokenizing keeps the whole text's first tokens.

The rest of the suite's fixture tokenizer has no normalizer. The real XLM-R rerankers' has one,
compiled by SentencePiece from its ``nmt_nfkc`` rule, which deletes U+000B and U+001C-U+001F (so
``ab<U+000B>cd`` is the single word ``▁abcd``) and turns NBSP and U+3000 into spaces. Here the
tokenizer is built the same way (:func:`fastrerank.testing.make_sentencepiece_tokenizer`).

The reference is independent of fastrerank's engine: the full tokenization of each text by the
model's own ``tokenizer.json`` (``tokenizers``), windows by the documented rule
(``reference.windows_by_rule``), scores from transformers' model on the same weights. The cut is
aimed at the engine's first prefix (``_CHARS_PER_TOKEN_GUESS`` characters a token wanted), where
the character that ends it is the one under test.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from fastrerank import Reranker, convert
from fastrerank._engine.tokenization import _CHARS_PER_TOKEN_GUESS, TextEncoder
from fastrerank.testing import _WORDS, ModelShape, make_corpus, make_reranker_folder, make_sentencepiece_tokenizer

from .reference import reference_logits_for_ids, windows_by_rule
from .reliability_helpers import memory_child

MAX_LENGTH = 64  # ModelShape.short(): windows of ~57 tokens, so a few hundred characters make several
OVERLAP = 80
QUERY = "apple fruit"
# Characters Python's \s matches; the first five the normalizer deletes, the others it keeps or makes a space.
CUT_CHARACTERS = ["\u000b", "\u001c", "\u001d", "\u001e", "\u001f", "\u0085", "\u00a0", "\u3000"]
THAI = ["ภาษาไทย", "เป็น", "ภาษา", "ที่", "ใช้", "ใน", "ประเทศไทย", "การ", "ค้นหา", "เอกสาร", "ข้อมูล", "ระบบ"]


@pytest.fixture(scope="module")
def spm_tokenizer() -> Tokenizer:
    return make_sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def spm_folder(tmp_path_factory: pytest.TempPathFactory, spm_tokenizer: Tokenizer) -> Path:
    return make_reranker_folder(tmp_path_factory.mktemp("spm") / "hf", ModelShape.short(), seed=11, tokenizer=spm_tokenizer)


@pytest.fixture(scope="module")
def spm_converted(tmp_path_factory: pytest.TempPathFactory, spm_folder: Path) -> Path:
    return convert(spm_folder, tmp_path_factory.mktemp("spm-ct2") / "short", quantization="float32")


@pytest.fixture(scope="module")
def spm_reranker(spm_converted: Path) -> Iterator[Reranker]:
    with Reranker(spm_converted, threads=1) as reranker:
        yield reranker


@pytest.fixture(scope="module")
def text_encoder(spm_converted: Path) -> TextEncoder:
    return TextEncoder(spm_converted / "tokenizer.json", embedding_rows=1000)


@pytest.fixture(scope="module")
def full(spm_folder: Path) -> Tokenizer:
    """The model's tokenizer.json as tokenizers reads it: the reference tokenization of whole texts."""
    return Tokenizer.from_file(str(spm_folder / "tokenizer.json"))


def _ids(full: Tokenizer, text: str) -> list[int]:
    return full.encode(text, add_special_tokens=False).ids


def _document_tokens(full: Tokenizer, max_chunks: int) -> int:
    """Document tokens ``max_chunks`` windows use after QUERY, by the restated rule."""
    return windows_by_rule(10**9, len(_ids(full, QUERY)), MAX_LENGTH, OVERLAP, max_chunks)[-1][1]


def _english(seed: int, length: int) -> str:
    text = " ".join(make_corpus(200, seed=seed))
    return (text * (length // len(text) + 1))[:length]


def _thai(seed: int, length: int) -> str:
    """Thai as it is written: no space between words, a space between phrases (of one or two words here)."""
    rng = random.Random(seed)
    phrases = ("".join(rng.choices(THAI, k=rng.randint(1, 2))) for _ in range(length))
    return " ".join(phrases)[:length]


def _with_char_at_cuts(base: str, char: str, cut: int) -> str:
    """``base`` with ``char`` as the last character of the first prefix and of the next two (each twice longer)."""
    for end in (cut, 2 * cut, 4 * cut):
        base = base[: end - 1] + char + base[end - 1 :]
    return base


def _reference(folder: Path, full: Tokenizer, query: str, docs: list[str], max_chunks: int) -> tuple[np.ndarray, int]:
    """(max logit per document, tokens run) from the full tokenizations, windows by the rule, transformers' model."""
    q = _ids(full, query)[: MAX_LENGTH * 3 // 4]
    best, tokens = [], 0
    for doc in docs:
        d = _ids(full, doc)
        rows = [[0, *q, 2, 2, *d[s:e], 2] for s, e in windows_by_rule(len(d), len(q), MAX_LENGTH, OVERLAP, max_chunks)]
        tokens += sum(len(row) for row in rows)
        best.append(reference_logits_for_ids(folder, rows).max())
    return np.array(best), tokens


def _assert_scores_like_reference(reranker: Reranker, folder: Path, full: Tokenizer, query: str, docs: list[str],
                                  max_chunks: int) -> None:
    ranking = reranker.rank(query, docs, max_chunks_per_doc=max_chunks, overlap_tokens=OVERLAP, raw=True)
    logits = np.empty(len(docs))
    for item in ranking:
        logits[item.index] = item.score
    expected, tokens = _reference(folder, full, query, docs, max_chunks)
    assert ranking.tokens == tokens
    np.testing.assert_allclose(logits, expected, atol=2e-4, rtol=0)


def test_the_tokenizer_has_sentencepieces_normalizer(spm_tokenizer: Tokenizer) -> None:
    state = json.loads(spm_tokenizer.to_str())
    assert state["normalizer"]["normalizers"][0]["type"] == "Precompiled"
    assert state["pre_tokenizer"]["type"] == "Metaspace"
    normalize = spm_tokenizer.normalizer.normalize_str
    for deleted in CUT_CHARACTERS[:5]:
        assert normalize(f"ab{deleted}cd") == "abcd"
    assert normalize("a\u00a0b\u3000c\td\ne") == "a b c d e"
    assert normalize("\uff21\u2460") == "A1"  # NFKC
    assert spm_tokenizer.encode("ab\u000bcd", add_special_tokens=False).word_ids == [0] * len(
        spm_tokenizer.encode("abcd", add_special_tokens=False).ids)
    assert make_sentencepiece_tokenizer().to_str() == spm_tokenizer.to_str()  # deterministic


@pytest.mark.parametrize("char", CUT_CHARACTERS, ids=lambda char: f"U+{ord(char):04X}")
def test_prefix_ids_are_the_whole_texts_first_ids(char: str, text_encoder: TextEncoder, full: Tokenizer) -> None:
    # Cheap and wide: no model, every text shape, many lengths; the char ends each prefix tried.
    for max_tokens in (1, 2, 7, 49, 57, 100, 157, 301):
        cut = max_tokens * _CHARS_PER_TOKEN_GUESS
        bases = {
            "english": _english(max_tokens, 6 * cut + 50),
            "thai": _thai(max_tokens, 6 * cut + 50),
            f"words joined by {char!r}": char.join(_english(max_tokens, 6 * cut + 50).split(" ")),
        }
        for shift in (0, 1, 2, 5):
            for name, base in bases.items():
                doc = _with_char_at_cuts(base, char, cut + shift)
                got = text_encoder.encode_many([doc], max_tokens=max_tokens)[0].tolist()
                assert got == _ids(full, doc)[:max_tokens], (name, max_tokens, shift)


@pytest.mark.parametrize("max_tokens", [1, 5, 49, 157, 1500])
def test_long_runs_without_whitespace(max_tokens: int, text_encoder: TextEncoder, full: Tokenizer) -> None:
    rng = random.Random(max_tokens)
    runs = {
        "thai": "".join(rng.choices(THAI, k=4000)),
        "chinese": "".join(rng.choices(_WORDS["zh"], k=20000)),
        "latin": "".join(rng.choices(_WORDS["en"], k=5000)),
        "mixed with deleted characters": "".join(rng.choices(THAI + _WORDS["en"] + ["\u000b", "\u001f", "1"], k=5000)),
    }
    for name, run in runs.items():
        got = text_encoder.encode_many([run], max_tokens=max_tokens)[0].tolist()
        assert got == _ids(full, run)[:max_tokens], name


@pytest.mark.parametrize("max_chunks", [1, 2, 3])
@pytest.mark.parametrize("char", CUT_CHARACTERS, ids=lambda char: f"U+{ord(char):04X}")
def test_scores_equal_the_reference_when_the_cut_lands_after(char: str, max_chunks: int, spm_reranker: Reranker,
                                                             spm_folder: Path, full: Tokenizer) -> None:
    cut = _document_tokens(full, max_chunks) * _CHARS_PER_TOKEN_GUESS
    docs = [
        _with_char_at_cuts(_english(1, 6 * cut), char, cut),
        _with_char_at_cuts(_thai(2, 6 * cut), char, cut),
        _with_char_at_cuts(_thai(3, 6 * cut), char, cut + 1),
        char.join(_english(4, 6 * cut).split(" ")),  # the char as the only separator
    ]
    _assert_scores_like_reference(spm_reranker, spm_folder, full, QUERY, docs, max_chunks)


@pytest.mark.parametrize("max_chunks", [1, 2, 4])
def test_scores_equal_the_reference_inside_long_runs_without_whitespace(max_chunks: int, spm_reranker: Reranker,
                                                                        spm_folder: Path, full: Tokenizer) -> None:
    rng = random.Random(max_chunks)
    docs = ["".join(rng.choices(THAI, k=1500)), "".join(rng.choices(_WORDS["zh"], k=3000)),
            "".join(rng.choices(_WORDS["en"], k=1000))]
    _assert_scores_like_reference(spm_reranker, spm_folder, full, QUERY, docs, max_chunks)


def test_thai_with_a_manual_line_break_at_the_cut(spm_reranker: Reranker, spm_folder: Path, full: Tokenizer) -> None:
    # The realistic case: Thai text (spaces between phrases only) with one U+000B (a manual line
    # break in Word) right at the end of the first prefix, inside a word that holds the last token
    # the window uses. The whitespace cut kept the pieces of the word's first half as if the word
    # ended there (ระบบ ภา instead of ระบบภาษา), so the window's final token and the score differed.
    window = _document_tokens(full, 1)
    cut = window * _CHARS_PER_TOKEN_GUESS
    for seed in range(100):
        text = _thai(seed, 4 * cut)
        doc = text[: cut - 1] + "\u000b" + text[cut - 1 :]
        encoding = full.encode(doc, add_special_tokens=False)
        split_word = {word for word, (start, end) in zip(encoding.word_ids, encoding.offsets) if start < cut <= end}
        if " " not in doc[cut - 2 : cut + 1] and encoding.word_ids[window - 1] in split_word:
            break
    else:
        raise AssertionError("no Thai text with U+000B inside the word of the window's last token")
    _assert_scores_like_reference(spm_reranker, spm_folder, full, QUERY, [doc], 1)


@pytest.mark.parametrize("char", ["\u000b", "\u001f", "\u00a0", "\u3000"], ids=lambda char: f"U+{ord(char):04X}")
def test_long_query_is_cut_like_the_whole_query(char: str, spm_reranker: Reranker, spm_folder: Path,
                                                full: Tokenizer) -> None:
    limit = MAX_LENGTH * 3 // 4
    cut = (limit + 1) * _CHARS_PER_TOKEN_GUESS  # the query's first prefix
    for base in (_thai(11, 4 * cut), _english(12, 4 * cut)):
        query = base[: cut - 1] + char + base[cut - 1 :]
        assert len(_ids(full, query)) > limit
        ranking = spm_reranker.rank(query, ["apple", "ภาษาไทย"], max_chunks_per_doc=1, raw=True)
        assert ranking.query_truncated is True
        logits = np.empty(2)
        for item in ranking:
            logits[item.index] = item.score
        expected, tokens = _reference(spm_folder, full, query, ["apple", "ภาษาไทย"], 1)
        assert ranking.tokens == tokens
        np.testing.assert_allclose(logits, expected, atol=2e-4, rtol=0)


_DELETED_ONLY = """
folder = sys.argv[1]
reranker = Reranker(folder, threads=1)
reranker.rank("apple fruit", ["apple"], max_chunks_per_doc=4)  # warm-up
doc = "\\u000b" * 10_000_000 + " apple fruit"
ranking, delta, peak, cpu = measure(lambda: reranker.rank("apple fruit", [doc], max_chunks_per_doc=4, raw=True))
empty = reranker.rank("apple fruit", [""], raw=True)
print(json.dumps({"delta": delta, "cpu": cpu, "tokens": ranking.tokens, "score": ranking[0].score,
                  "empty_tokens": empty.tokens, "empty_score": empty[0].score}))
"""


@pytest.mark.slow
def test_text_of_deleted_characters_is_not_tokenized_whole(spm_converted: Path) -> None:
    # 10 million characters the normalizer deletes make no token: the prefix grew until it was the
    # whole text (+360 MiB). It now stops at 32 characters a token wanted, and the document is
    # scored on the tokens of that prefix: none here, as an empty document (documented).
    result = memory_child(_DELETED_ONLY, spm_converted)
    print(f"10M deleted characters: +{result['delta']:.1f} MiB peak RSS, {result['cpu']:.2f} s CPU")
    assert result["delta"] < 50 and result["cpu"] < 1, result
    assert result["tokens"] == result["empty_tokens"]
    assert result["score"] == result["empty_score"]

"""BERT cross-encoders (ms-marco MiniLM / TinyBERT family): scores equal transformers, the window rule with
three special tokens, int8 fidelity, plain-text special strings, the long-text cut, conversion checks, serving.

The reference is transformers' ``BertForSequenceClassification`` on the same folder. The window rule
and the pair template are written here again from the issue's text, never imported from the engine.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastrerank
from fastrerank import (
    ConversionError,
    CorruptModelError,
    Reranker,
    UnsupportedModelError,
    convert,
)
from fastrerank._engine.chunking import plan_windows
from fastrerank._engine.pair_template import PairTemplate
from fastrerank._engine.tokenization import TextEncoder
from fastrerank.testing import ModelShape, make_bert_reranker_folder, make_corpus, make_wordpiece_tokenizer

QUERY = "apple fruit health"
CLS, SEP = 101, 102
SPECIAL_STRINGS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[cls]", "[Sep]")


@pytest.fixture(scope="module")
def bert_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hugging Face folders of random-weight BERT rerankers: 512 positions, and 64 so that chunking happens."""
    root = tmp_path_factory.mktemp("bert")
    tokenizer = make_wordpiece_tokenizer()
    return {name: make_bert_reranker_folder(root / name, shape, seed=11, tokenizer=tokenizer)
            for name, shape in (("tiny", ModelShape.bert_tiny()), ("short", ModelShape.bert_short()))}


@pytest.fixture(scope="module")
def bert_converted(bert_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("bert-ct2")
    made: dict[tuple[str, str], Path] = {}

    def get(name: str, quantization: str = "float32") -> Path:
        if (name, quantization) not in made:
            made[name, quantization] = convert(bert_models[name], root / f"{name}-{quantization}", quantization=quantization)
        return made[name, quantization]

    return get


def _reference(folder: Path, split_special_tokens: bool = False):  # type: ignore[no-untyped-def]
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), split_special_tokens=split_special_tokens)
    return tokenizer, AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()


def _logits(model, rows: list[tuple[list[int], list[int]]]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Logits of (ids, token types) rows, right-padded with [PAD] and masked."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for i, (row, kinds) in enumerate(rows):
        ids[i, : len(row)], types[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), torch.tensor(kinds), 1
    with torch.no_grad():
        return model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits[:, 0].double().numpy()


def _pair_logits(folder: Path, query: str, docs: list[str], max_length: int, split_special_tokens: bool = False) -> np.ndarray:
    tokenizer, model = _reference(folder, split_special_tokens)
    encoded = [tokenizer(query, doc, truncation="only_second", max_length=max_length) for doc in docs]
    return _logits(model, [(e["input_ids"], e["token_type_ids"]) for e in encoded])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _docs(count: int, seed: int, words: int) -> list[str]:
    sentences = make_corpus(count * words, seed=seed)
    return [" ".join(sentences[i * words : (i + 1) * words]) for i in range(count)]


def test_float32_scores_equal_transformers(bert_converted, bert_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(24, seed=5, words=3) + ["", "Über café — naïve 预防感冒!"]
    with Reranker(bert_converted("tiny"), threads=1) as reranker:
        ranking = reranker.rank(QUERY, docs, raw=True)
        scores = reranker.score(QUERY, docs)
    logits = _pair_logits(bert_models["tiny"], QUERY, docs, 512)
    # transformers encodes an empty second text as no pair at all, while the rule scores it as
    # [CLS] query [SEP] [SEP], the last [SEP] of token type 1: build that row by hand.
    tokenizer, model = _reference(bert_models["tiny"])
    q = tokenizer(QUERY, add_special_tokens=False)["input_ids"]
    logits[docs.index("")] = _logits(model, [([CLS, *q, SEP, SEP], [0] * (len(q) + 2) + [1])])[0]
    np.testing.assert_allclose(scores, _sigmoid(logits), atol=1e-4)
    np.testing.assert_allclose([item.score for item in sorted(ranking, key=lambda r: r.index)], logits, atol=1e-4)
    assert np.ptp(_sigmoid(logits)) > 0.3, "fixture scores must differ clearly between documents"
    assert ranking.tokens == sum(len(tokenizer(QUERY, doc)["input_ids"]) for doc in docs) + 1  # the empty one's [SEP]


def _windows(doc_len: int, query_len: int, max_length: int, overlap: int, max_chunks: int) -> list[tuple[int, int]]:
    """The issue's rule for BERT, restated: W = L - q - 3, o = min(overlap, W // 4), s = W - o."""
    window = max_length - query_len - 3
    step = window - min(overlap, window // 4)
    spans: list[tuple[int, int]] = []
    while len(spans) < max_chunks:
        start = len(spans) * step
        spans.append((start, min(start + window, doc_len)))
        if start + window >= doc_len:
            break
    return spans


@pytest.mark.parametrize("overlap", [0, 5, 80])
@pytest.mark.parametrize("max_chunks", [1, 2, 3, 1024])
def test_long_documents_score_the_max_over_the_windows(overlap: int, max_chunks: int, bert_converted,  # type: ignore[no-untyped-def]
                                                        bert_models: dict[str, Path]) -> None:
    docs = _docs(5, seed=13, words=10) + ["", "short one"]
    query = "machine learning model search"
    with Reranker(bert_converted("short"), threads=1) as reranker:
        ranking = reranker.rank(query, docs, overlap_tokens=overlap, max_chunks_per_doc=max_chunks, raw=True)
    tokenizer, model = _reference(bert_models["short"])
    q = tokenizer(query, add_special_tokens=False)["input_ids"]
    expected, tokens = [], 0
    for doc in docs:
        d = tokenizer(doc, add_special_tokens=False)["input_ids"]
        rows = [([CLS, *q, SEP, *d[s:e], SEP], [0] * (len(q) + 2) + [1] * (e - s + 1))
                for s, e in _windows(len(d), len(q), 64, overlap, max_chunks)]
        tokens += sum(len(ids) for ids, _ in rows)
        expected.append(_logits(model, rows).max())
    np.testing.assert_allclose([item.score for item in sorted(ranking, key=lambda r: r.index)], expected, atol=1e-4)
    assert ranking.tokens == tokens
    assert max(len(tokenizer(doc, add_special_tokens=False)["input_ids"]) for doc in docs) > 150  # 3 windows cut it


def test_one_window_equals_only_second_truncation(bert_converted, bert_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(8, seed=9, words=6)
    with Reranker(bert_converted("short"), threads=1) as reranker:
        scores = reranker.score(QUERY, docs, max_chunks_per_doc=1, raw=True)
    np.testing.assert_allclose(scores, _pair_logits(bert_models["short"], QUERY, docs, 64), atol=1e-4)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_int8_ranks_like_the_reference(bert_converted, bert_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    docs = [" ".join(make_corpus(3, seed=100 + i)) for i in range(30)]
    correlations = []
    with Reranker(bert_converted("tiny", "int8"), threads=1) as reranker:
        for query in ("apple banana fruit", "machine learning model", "health vaccine study"):
            reference = _pair_logits(bert_models["tiny"], query, docs, 512)
            assert reference.std() > 0.5, "the fixture must rank: scores differ clearly"
            correlations.append(_spearman(reranker.score(query, docs, raw=True), reference))
    print("int8 Spearman per query", correlations)
    assert min(correlations) >= 0.99


def test_special_token_strings_are_plain_text(bert_converted, bert_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    folder = bert_converted("tiny")
    texts = [f"apple {s} fruit" for s in SPECIAL_STRINGS] + [" ".join(SPECIAL_STRINGS), "[CLS][SEP]x[PAD]", "a[MASK]b"]
    encoder = TextEncoder(folder / "tokenizer.json", embedding_rows=1000)
    split, _ = _reference(bert_models["tiny"], split_special_tokens=True)
    for text in texts:
        ids = encoder.encode(text)
        assert ids == split(text, add_special_tokens=False)["input_ids"], text
        assert not {0, 100, 101, 102, 103} & set(ids), text
    with Reranker(folder, threads=1) as reranker:
        scores = reranker.score(f"what is {SPECIAL_STRINGS[1]}?", texts, raw=True)
    np.testing.assert_allclose(scores, _pair_logits(bert_models["tiny"], "what is [SEP]?", texts, 512, True), atol=1e-4)


_FRAGMENTS = ["apple", "Fruit", "pie", ",", ".", "!", "...", "—", "(x)", "[CLS]", "naïve", "café", "e\u0301", "\u0301",
              "预防感冒", "東京", "🍕", "ÜBER", "\t", "\n", "\u00a0", "\u3000", "\x00", "\u200b", "1234", "don't", "a-b",
              "\ufffd", "Ⅻ", "ﬁ", "x" * 90]
_LONG_WORDS = ["x" * 150, "ab" * 70, "".join(_FRAGMENTS[:3]) * 30]


def test_long_texts_are_cut_where_bert_ends_a_word(bert_converted) -> None:  # type: ignore[no-untyped-def]
    """The cut before tokenizing (long texts) keeps exactly the first tokens of the full tokenization.

    BertPreTokenizer ends a word at whitespace and punctuation; WordPiece makes a word of over 100
    characters one [UNK]. Such words give fewer tokens than the cut's 32 characters a token, so a
    text made of them is scored on the tokens of its first characters (the documented cap): those
    are still the full tokenization's first tokens, never others.
    """
    from tokenizers import Tokenizer

    folder = bert_converted("tiny")
    encoder = TextEncoder(folder / "tokenizer.json", embedding_rows=1000)
    full = Tokenizer.from_file(str(folder / "tokenizer.json"))
    full.encode_special_tokens = True
    rng = random.Random(3)
    texts = [" ".join(rng.choices(_FRAGMENTS, k=rng.randint(50, 3000))) for _ in range(40)]
    texts += ["".join(rng.choices(_FRAGMENTS, k=2000)), "word " * 5000, "预防感冒" * 2000]
    dense = [" ".join(rng.choices(_FRAGMENTS + _LONG_WORDS, k=3000)) for _ in range(5)] + ["a" * 20000 + " apple"]
    for max_tokens in (7, 61, 500):
        for text, ids in zip(texts + dense, encoder.encode_many(texts + dense, max_tokens=max_tokens)):
            expected = full.encode(text, add_special_tokens=False).ids[:max_tokens]
            if text in dense:
                assert ids.tolist() == expected[: len(ids)], (max_tokens, text[:80])
            else:
                assert ids.tolist() == expected, (max_tokens, text[:80])


def test_same_encoder_as_ctranslate2s_bert_loader(bert_converted, bert_models: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import ctranslate2

    theirs = tmp_path / "ct2-own"
    script = ("import ctranslate2, sys\n"
              "ctranslate2.converters.TransformersConverter(sys.argv[1]).convert(sys.argv[2], quantization='float32')\n")
    subprocess.run([sys.executable, "-c", script, str(bert_models["tiny"]), str(theirs)], check=True, capture_output=True)
    tokenizer, _ = _reference(bert_models["tiny"])
    encoded = [tokenizer(QUERY, doc) for doc in _docs(6, seed=2, words=2)]
    rows = [e["input_ids"] for e in encoded]
    types = [e["token_type_ids"] for e in encoded]
    width = max(map(len, rows))
    outputs = []
    for folder in (bert_converted("tiny"), theirs):
        encoder = ctranslate2.Encoder(str(folder), device="cpu", intra_threads=1)
        padded = [t + [0] * (width - len(t)) for t in types]
        outputs.append(np.array(encoder.forward_batch(rows, token_type_ids=padded).last_hidden_state))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_the_folder_records_the_pair_template(bert_converted) -> None:  # type: ignore[no-untyped-def]
    metadata = json.loads((bert_converted("tiny") / "fastrerank.json").read_text())
    assert metadata["format_version"] == 3
    assert metadata["architecture"] == "BertForSequenceClassification"
    assert metadata["pair_template"] == {"before_query": [CLS], "between": [SEP], "after_window": [SEP], "window_token_type": 1}
    assert metadata["special_tokens"] == {"cls": CLS, "sep": SEP, "pad": 0, "unk": 100}
    assert metadata["max_positions"] == metadata["recommended_max_length"] == 512  # BERT reserves no position rows


def _edit(folder: Path, name: str, **changes: object) -> None:
    content = json.loads((folder / name).read_text())
    content.update(changes)
    (folder / name).write_text(json.dumps(content))


def test_folders_without_a_template_are_xlmr_and_bad_templates_are_refused(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(6, seed=4, words=2)
    old = shutil.copytree(converted("short"), tmp_path / "v2")
    metadata = json.loads((old / "fastrerank.json").read_text())
    del metadata["architecture"], metadata["pair_template"]
    (old / "fastrerank.json").write_text(json.dumps({**metadata, "format_version": 2}))
    with Reranker(old, threads=1) as before, Reranker(converted("short"), threads=1) as now:
        np.testing.assert_array_equal(before.score(QUERY, docs), now.score(QUERY, docs))
    (old / "fastrerank.json").write_text(json.dumps(metadata))  # v3 must say which template
    with pytest.raises(CorruptModelError, match=r"fastrerank\.json: architecture is missing; re-convert with force=True$"):
        Reranker(old, threads=1)
    template = {"before_query": [0], "between": [2, 2], "after_window": [2], "window_token_type": 0}
    bad = {
        "window_token_type": ({**template, "window_token_type": 2}, r"pair_template\['window_token_type'\] must be 0 or 1, got 2"),
        "id past the table": ({**template, "between": [2, 1000]},
                              r"pair_template\['between'\] must be a list of token ids in \[0, embedding_rows=1000\), got \[2, 1000\]"),
        "no separator": ({**template, "between": []}, "must have a token before the query and one between query and window"),
        "keys": ({"before_query": [0]}, "pair_template must be an object with the keys before_query, between, after_window"),
    }
    for value, message in bad.values():
        (old / "fastrerank.json").write_text(json.dumps({**metadata, "architecture": "BertForSequenceClassification",
                                                         "pair_template": value}))
        with pytest.raises(CorruptModelError, match=message):
            Reranker(old, threads=1)


def _add_position_ids(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors["bert.embeddings.position_ids"] = np.arange(512, dtype=np.int64)[None, :]
    save_file(tensors, folder / "model.safetensors")


def _drop_tensor(folder: Path, name: str) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    del tensors[name]
    save_file(tensors, folder / "model.safetensors")


def _single_only_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A", pair="[CLS] $A $B:1", special_tokens=[("[CLS]", CLS)])
    tokenizer.save(str(folder / "tokenizer.json"))


BAD_BERT = {
    "one token type": (lambda f: _edit(f, "config.json", type_vocab_size=1), CorruptModelError,
                       r"config\.json: type_vocab_size must be an int >= 2 \(the document's tokens have token type 1\), got 1"),
    "float positions": (lambda f: _edit(f, "config.json", max_position_embeddings=512.0), CorruptModelError,
                        r"config\.json: max_position_embeddings must be an int >= 1, got 512\.0"),
    "pad id past the vocabulary": (lambda f: _edit(f, "config.json", pad_token_id=1000), CorruptModelError,
                                   r"pad_token_id must be an int in \[0, vocab_size=1000\), got 1000"),
    "heads": (lambda f: _edit(f, "config.json", num_attention_heads=5), CorruptModelError,
              r"num_attention_heads must be an int >= 1 that divides hidden_size=64, got 5"),
    "eps": (lambda f: _edit(f, "config.json", layer_norm_eps=-1), CorruptModelError, "layer_norm_eps must be a finite number > 0"),
    "two labels": (lambda f: _edit(f, "config.json", id2label={"0": "a", "1": "b"}), UnsupportedModelError, "2 labels"),
    "relative positions": (lambda f: _edit(f, "config.json", position_embedding_type="relative_key"), UnsupportedModelError,
                           "position_embedding_type='relative_key'"),
    "token types disagree": (lambda f: _edit(f, "config.json", type_vocab_size=3), ConversionError,
                             r"token_type_embeddings\.weight' has shape \(2, 64\), expected \(3, 64\) from config\.json"),
    "no pooler": (lambda f: _drop_tensor(f, "bert.pooler.dense.weight"), ConversionError,
                  r"tensor 'pooler\.dense\.weight' is missing from the checkpoint"),
    "layers": (lambda f: _edit(f, "config.json", num_hidden_layers=3), ConversionError,
               r"num_hidden_layers=3 but the checkpoint has 2 encoder layers"),
    "pairs without a separator": (_single_only_tokenizer, UnsupportedModelError,
                                  r"tokenizer\.json builds pairs as '\[CLS\]:0 a:0 b:1'.*between the two is expected"),
}


@pytest.mark.parametrize("case", sorted(BAD_BERT))
def test_bad_bert_checkpoints_are_refused_before_anything_is_written(case: str, bert_models: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    damage, error, message = BAD_BERT[case]
    source = shutil.copytree(bert_models["tiny"], tmp_path / "src")
    damage(source)
    with pytest.raises(error, match=message):
        convert(source, tmp_path / "out", quantization="float32")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp-*"))


def test_a_position_ids_buffer_is_ignored(bert_converted, bert_models: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = shutil.copytree(bert_models["tiny"], tmp_path / "src")
    _add_position_ids(source)  # int64, as older transformers saved it
    out = convert(source, tmp_path / "out", quantization="float32")
    assert (out / "model.bin").read_bytes() == (bert_converted("tiny") / "model.bin").read_bytes()


def test_served_like_any_model(bert_converted, bert_models: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from fastrerank.server import create_app

    from .serving.asgi_client import request

    docs = _docs(5, seed=21, words=2)
    with Reranker(bert_converted("tiny"), threads=1) as reranker:
        app = create_app({"cross-encoder/ms-marco-MiniLM-L-6-v2": reranker})
        body = request(app, "POST", "/v1/rerank", json={"model": "cross-encoder/ms-marco-MiniLM-L-6-v2", "query": QUERY,
                                                         "documents": docs}).json()
    expected = _sigmoid(_pair_logits(bert_models["tiny"], QUERY, docs, 512))
    assert [r["index"] for r in body["results"]] == np.argsort(-expected, kind="stable").tolist()
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], np.sort(expected)[::-1], atol=1e-4)


@given(query=st.lists(st.integers(103, 999), min_size=0, max_size=20), window=st.lists(st.integers(103, 999), max_size=20),
       between=st.sampled_from([(102,), (2, 2)]), kind=st.sampled_from([0, 1]))
def test_pair_template_rows_and_token_types(query: list[int], window: list[int], between: tuple[int, ...], kind: int) -> None:
    template = PairTemplate(before=(101,), between=between, after=(102,), window_token_type=kind)
    row = template.row(np.array(query, dtype=np.int32), np.array(window, dtype=np.int32))
    assert row.tolist() == [101, *query, *between, *window, 102]
    assert template.specials_per_pair == 2 + len(between)
    padded = np.concatenate((row, np.zeros(3, dtype=np.int32)))[None, :]
    assert template.token_types(padded)[0, : len(row)].tolist() == [0] * (1 + len(query) + len(between)) + [kind] * (len(window) + 1)
    plan = plan_windows(64, len(query), 80, 4, specials_per_pair=template.specials_per_pair)
    assert plan.window == 64 - len(query) - template.specials_per_pair


def test_a_query_holding_the_separator_id_is_refused() -> None:
    template = PairTemplate(before=(CLS,), between=(SEP,), after=(SEP,), window_token_type=1)
    with pytest.raises(fastrerank.InferenceError, match="the query's tokens hold the separator id 102"):
        template.prefix(np.array([5, SEP], dtype=np.int32))

"""Make random-weight XLM-RoBERTa and BERT rerankers, for tests and benchmarks, without any download.

A folder written by :func:`make_reranker_folder` is an ordinary Hugging Face model folder
(``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``,
``special_tokens_map.json``) holding an ``XLMRobertaForSequenceClassification`` with one label.
transformers loads it, and so does :func:`fastrerank.convert`. The weights are random but seeded,
with a spread large enough that different documents get clearly different scores; the tokenizer
is an XLM-R-style Unigram model learnt from a generated multilingual corpus.
:func:`make_bert_reranker_folder` writes a ``BertForSequenceClassification`` (the ms-marco
MiniLM / TinyBERT family) with a WordPiece tokenizer learnt from the same corpus.

Only runtime dependencies are used (numpy, safetensors, tokenizers), so a user can test a
service built on fastrerank without a 2 GB download, and the benchmarks can build full-size
architectures whose compute cost equals the real models'. :func:`make_sentencepiece_tokenizer`
alone also needs ``sentencepiece`` (and ``protobuf``): it builds a tokenizer the way the real
models' were built, normalizer included::

    >>> from fastrerank.testing import ModelShape, make_reranker_folder
    >>> folder = make_reranker_folder("/tmp/tiny-reranker", ModelShape.tiny())  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import math
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

__all__ = [
    "ModelShape",
    "make_bert_reranker_folder",
    "make_corpus",
    "make_reranker_folder",
    "make_sentencepiece_tokenizer",
    "make_tokenizer",
    "make_wordpiece_tokenizer",
]

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0, 1, 2, 3, as in XLM-R
MASK_TOKEN = "<mask>"
PADDING_IDX = 1

_WORDS = {
    "en": (
        "the a of and to in is for on with that by as from at this be are was it an or which "
        "apple banana fruit vegetable pizza great search query document rank reranker model "
        "machine learning artificial intelligence science data system network language text "
        "token window chunk score relevance retrieval engine server client request response "
        "cold flu vaccine hand wash mask health hospital research study guide year october "
        "city river mountain history music film book library computer program python speed "
        "fast slow large small new old good best first last time people world water energy"
    ).split(),
    "zh": list("预防感冒应勤洗手戴口罩保持室内通风流感疫苗每年月接种最佳可降低感染风险维生素对的效果存在争议人工智能是研究开发用于模拟延伸和扩展人的智能理论方法技术及应用系统"),
    "ru": "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой".split(),
    "ar": "في من على إلى عن مع هذا هذه الذي التي كان بين كل بعد عند قبل حتى".split(),
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als".split(),
    "emoji": ["😀", "🍕", "👍", "🚀", "👩‍💻", "🇩🇪", "❤️"],
}


@dataclass(frozen=True)
class ModelShape:
    """The architecture of a generated model.

    ``max_position_embeddings`` is the position table's rows. XLM-R reserves two of them (514 gives
    512 usable positions); BERT reserves none (:meth:`bert_tiny`, :meth:`minilm_l6`, made with
    :func:`make_bert_reranker_folder`).
    ``embedding_rows`` may exceed the tokenizer's vocabulary (the real models have 250,002 rows).
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 514
    vocab_size: int = 1000
    embedding_rows: int | None = None

    @classmethod
    def tiny(cls) -> ModelShape:
        """A 2-layer, hidden-64 model with 512 usable positions."""
        return cls()

    @classmethod
    def short(cls) -> ModelShape:
        """A 3-layer, hidden-32 model with only 64 usable positions, so that chunking happens on short texts."""
        return cls(hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, max_position_embeddings=66)

    @classmethod
    def wide(cls) -> ModelShape:
        """A 4-layer, hidden-128 model with extra embedding rows beyond the tokenizer's vocabulary."""
        return cls(hidden_size=128, num_layers=4, num_heads=8, intermediate_size=256, embedding_rows=1200)

    @classmethod
    def base(cls) -> ModelShape:
        """The shape of bge-reranker-base and bce-reranker-base_v1 (768 hidden, 12 layers)."""
        return cls(768, 12, 12, 3072, 514, 8000, 250002)

    @classmethod
    def large(cls) -> ModelShape:
        """The shape of bge-reranker-v2-m3 (1024 hidden, 24 layers, 8194 positions)."""
        return cls(1024, 24, 16, 4096, 8194, 8000, 250002)

    @classmethod
    def bert_tiny(cls) -> ModelShape:
        """A 2-layer, hidden-64 BERT with 512 positions (BERT reserves no position rows)."""
        return cls(max_position_embeddings=512)

    @classmethod
    def bert_short(cls) -> ModelShape:
        """A 3-layer, hidden-32 BERT with only 64 positions, so that chunking happens on short texts."""
        return cls(hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, max_position_embeddings=64)

    @classmethod
    def minilm_l6(cls) -> ModelShape:
        """The shape of cross-encoder/ms-marco-MiniLM-L-6-v2 (6 layers, 384 hidden, 12 heads, 30,522 rows), as a BERT."""
        return cls(384, 6, 12, 1536, 512, 8000, 30522)

    @property
    def rows(self) -> int:
        """Rows of the word-embedding matrix."""
        return self.embedding_rows or self.vocab_size


def make_corpus(num_sentences: int = 3000, seed: int = 0) -> list[str]:
    """Generated multilingual sentences (English-heavy, with Chinese, Russian, Arabic, German, emoji)."""
    rng = random.Random(seed)
    languages = list(_WORDS)
    weights = [6, 2, 1, 1, 1, 0.3]
    sentences = []
    for _ in range(num_sentences):
        lang = rng.choices(languages, weights)[0]
        words = _WORDS[lang]
        count = rng.randint(4, 24)
        joiner = "" if lang == "zh" else " "
        sentence = joiner.join(rng.choice(words) for _ in range(count))
        if rng.random() < 0.2:
            sentence += f" {rng.randint(0, 9999)}."
        sentences.append(sentence)
    return sentences


def _unigram_pieces(corpus: list[str], size: int) -> list[tuple[str, float]]:
    """Learn Unigram pieces by counting: every character, then the most frequent word pieces.

    ``tokenizers``' own ``UnigramTrainer`` gives a different vocabulary on every run (hash-map
    order), which would make the fixtures, and every number measured on them, change between
    runs. Counting is deterministic, and a Unigram model needs nothing more than pieces with
    log-probability scores.
    """
    counts: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for sentence in corpus:
        for word in sentence.split():
            piece = "\u2581" + word
            chars.update(piece)
            for length in range(2, min(len(piece), 8) + 1):
                for start in range(len(piece) - length + 1):
                    counts[piece[start : start + length]] += 1
    budget = size - len(SPECIAL_TOKENS) - 1 - len(chars)
    # Sort by count, then by the piece itself, so ties are broken the same way on every run.
    frequent = sorted(counts.items(), key=lambda item: (-item[1] * len(item[0]), item[0]))[: max(budget, 0)]
    total = sum(chars.values()) + sum(count for _, count in frequent)
    pieces = sorted(chars.items(), key=lambda item: (-item[1], item[0])) + frequent
    return [(piece, math.log(count / total)) for piece, count in pieces]


def make_tokenizer(vocab_size: int = 1000, seed: int = 0) -> Tokenizer:
    """Build an XLM-R-style Unigram tokenizer learnt from :func:`make_corpus`; deterministic.

    Special ids are ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 and ``<mask>`` last; pairs are
    encoded as ``<s> A </s></s> B </s>`` like XLM-R's.
    """
    specials = [(token, 0.0) for token in SPECIAL_TOKENS]
    pieces = _unigram_pieces(make_corpus(seed=seed), vocab_size)
    tokenizer = Tokenizer(models.Unigram(specials + pieces, unk_id=SPECIAL_TOKENS.index("<unk>"), byte_fallback=False))
    # The pipeline transformers' XLMRobertaTokenizer builds. The real models add a normalizer
    # compiled by SentencePiece (an NFKC variant) that can only be made with SentencePiece itself,
    # and transformers keeps only that kind of normalizer, so the fixture has none.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return _with_xlmr_specials(tokenizer)


def _with_xlmr_specials(tokenizer: Tokenizer) -> Tokenizer:
    """Add XLM-R's special tokens and pair template to a tokenizer whose vocabulary starts with them."""
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in SPECIAL_TOKENS])
    tokenizer.add_special_tokens([AddedToken(MASK_TOKEN, lstrip=True, special=True)])
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected_id:
            raise RuntimeError(f"special token {token!r} got id {tokenizer.token_to_id(token)}, expected {expected_id}")
    return tokenizer


# Scripts written without spaces between words (Thai), and Japanese with ideographic spaces
# (U+3000), so that a SentencePiece tokenizer covers the texts where its normalizer matters.
_SPM_EXTRA = {
    "th": ["ภาษาไทย", "เป็น", "ภาษา", "ที่", "ใช้", "ใน", "ประเทศไทย", "การ", "ค้นหา", "เอกสาร", "ข้อมูล", "ระบบ"],
    "ja": ["東京", "は", "日本", "の", "首都", "です", "検索", "文書", "モデル", "データ"],
}


def make_sentencepiece_tokenizer(vocab_size: int = 1000, seed: int = 0) -> Tokenizer:
    """Build an XLM-R tokenizer from a SentencePiece Unigram model trained offline; deterministic.

    Unlike :func:`make_tokenizer`, the pipeline is the real models' (xlm-roberta, bge-reranker,
    bce-reranker): SentencePiece's own ``nmt_nfkc`` normalization compiled into a ``Precompiled``
    normalizer (NFKC, with control characters such as U+000B and U+001C-U+001F deleted, and
    NBSP, U+3000, tabs and newlines made spaces), spaces collapsed, and a Metaspace pre-tokenizer;
    the vocabulary is laid out as transformers' ``XLMRobertaConverter`` lays it out (``<s>``,
    ``<pad>``, ``</s>``, ``<unk>``, the SentencePiece pieces, ``<mask>`` last).

    ``vocab_size`` counts every token, ``<mask>`` included. Needs ``sentencepiece`` (training,
    and its ``sentencepiece_model_pb2`` to read the model back) and ``protobuf``.
    """
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    rng = random.Random(seed)
    corpus = make_corpus(seed=seed)
    for _ in range(300):
        thai = " ".join("".join(rng.choices(_SPM_EXTRA["th"], k=rng.randint(2, 6))) for _ in range(rng.randint(1, 4)))
        corpus += [thai, "\u3000".join(rng.choices(_SPM_EXTRA["ja"], k=rng.randint(3, 10)))]
    model = io.BytesIO()
    # SentencePiece's own <unk>, <s>, </s> are its ids 0-2; XLM-R replaces them by its four
    # specials, so the model has vocab_size - 2 pieces.
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab_size - 2, model_type="unigram",
        normalization_rule_name="nmt_nfkc", character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated at import
    proto.ParseFromString(model.getvalue())
    vocab = [(token, 0.0) for token in SPECIAL_TOKENS]
    vocab += [(piece.piece, piece.score) for piece in proto.pieces[3:]] + [(MASK_TOKEN, 0.0)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=SPECIAL_TOKENS.index("<unk>"), byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return _with_xlmr_specials(tokenizer)


def normal_weights(rng: np.random.Generator, *dims: int, std: float) -> np.ndarray:
    """float32 weights drawn from N(0, std²), in the order the fixtures rely on."""
    return (rng.standard_normal(dims, dtype=np.float32) * np.float32(std)).astype(np.float32)


def random_encoder_weights(shape: ModelShape, rng: np.random.Generator, *, prefix: str, token_types: int,
                           token_type_std: float) -> dict[str, np.ndarray]:
    """Embeddings and post-LN layers of a BERT-style encoder (XLM-R's and BERT's share them), under ``prefix``.

    Spreads are chosen so attention is peaked and the first-token state depends on the text:
    with BERT's usual std of 0.02 every document would get nearly the same score.
    """
    hidden, inter = shape.hidden_size, shape.intermediate_size

    def normal(*dims: int, std: float) -> np.ndarray:
        return normal_weights(rng, *dims, std=std)

    proj_std = 1.0 / np.sqrt(hidden)
    tensors: dict[str, np.ndarray] = {
        f"{prefix}embeddings.word_embeddings.weight": normal(shape.rows, hidden, std=1.0),
        f"{prefix}embeddings.position_embeddings.weight": normal(shape.max_position_embeddings, hidden, std=0.3),
        f"{prefix}embeddings.token_type_embeddings.weight": normal(token_types, hidden, std=token_type_std),
        f"{prefix}embeddings.LayerNorm.weight": 1.0 + normal(hidden, std=0.1),
        f"{prefix}embeddings.LayerNorm.bias": normal(hidden, std=0.1),
    }
    for i in range(shape.num_layers):
        layer = f"{prefix}encoder.layer.{i}."
        for name, std in (("query", 2.0 * proj_std), ("key", 2.0 * proj_std), ("value", proj_std)):
            tensors[layer + f"attention.self.{name}.weight"] = normal(hidden, hidden, std=std)
            tensors[layer + f"attention.self.{name}.bias"] = normal(hidden, std=0.1)
        tensors[layer + "attention.output.dense.weight"] = normal(hidden, hidden, std=proj_std)
        tensors[layer + "attention.output.dense.bias"] = normal(hidden, std=0.1)
        tensors[layer + "attention.output.LayerNorm.weight"] = 1.0 + normal(hidden, std=0.1)
        tensors[layer + "attention.output.LayerNorm.bias"] = normal(hidden, std=0.1)
        tensors[layer + "intermediate.dense.weight"] = normal(inter, hidden, std=proj_std)
        tensors[layer + "intermediate.dense.bias"] = normal(inter, std=0.1)
        tensors[layer + "output.dense.weight"] = normal(hidden, inter, std=1.0 / np.sqrt(inter))
        tensors[layer + "output.dense.bias"] = normal(hidden, std=0.1)
        tensors[layer + "output.LayerNorm.weight"] = 1.0 + normal(hidden, std=0.1)
        tensors[layer + "output.LayerNorm.bias"] = normal(hidden, std=0.1)
    return tensors


def _random_weights(shape: ModelShape, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hidden = shape.hidden_size
    tensors = random_encoder_weights(shape, rng, prefix="roberta.", token_types=1, token_type_std=0.3)
    proj_std = 1.0 / np.sqrt(hidden)
    tensors["classifier.dense.weight"] = normal_weights(rng, hidden, hidden, std=2.0 * proj_std)
    tensors["classifier.dense.bias"] = normal_weights(rng, hidden, std=0.1)
    tensors["classifier.out_proj.weight"] = normal_weights(rng, 1, hidden, std=0.5)
    tensors["classifier.out_proj.bias"] = np.zeros(1, dtype=np.float32)
    return tensors


def _config(shape: ModelShape) -> dict[str, object]:
    return {
        "architectures": ["XLMRobertaForSequenceClassification"],
        "model_type": "xlm-roberta",
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "pad_token_id": PADDING_IDX,
        "eos_token_id": 2,
        "classifier_dropout": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate_size,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": shape.max_position_embeddings,
        "num_attention_heads": shape.num_heads,
        "num_hidden_layers": shape.num_layers,
        # CTranslate2's converter needs this key and transformers 5 no longer writes it;
        # the real models' config.json files carry it.
        "position_embedding_type": "absolute",
        "type_vocab_size": 1,
        "use_cache": True,
        "vocab_size": shape.rows,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "torch_dtype": "float32",
    }


def make_reranker_folder(
    folder: str | os.PathLike[str],
    shape: ModelShape | None = None,
    *,
    seed: int = 0,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write a random-weight ``XLMRobertaForSequenceClassification`` reranker folder and return its path.

    Args:
        folder: where to write; created if missing. Existing files of the same names are replaced.
        shape: the architecture; :meth:`ModelShape.tiny` by default.
        seed: seeds the weights (the tokenizer is seeded separately by ``make_tokenizer``).
        tokenizer: reuse an already trained tokenizer (training takes a second or two).
    """
    shape = shape or ModelShape.tiny()
    tokenizer = tokenizer or make_tokenizer(shape.vocab_size)
    if tokenizer.get_vocab_size() > shape.rows:
        raise ValueError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the shape only {shape.rows} embedding rows")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_random_weights(shape, seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(_config(shape), indent=2))
    tokenizer.save(str(out / "tokenizer.json"))
    max_length = shape.max_position_embeddings - PADDING_IDX - 1
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "pad_token": "<pad>", "cls_token": "<s>", "mask_token": MASK_TOKEN}
    tokenizer_config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": max_length,
                        "clean_up_tokenization_spaces": True, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (out / "fastrerank_testing.json").write_text(json.dumps({"shape": asdict(shape), "seed": seed}, indent=2))
    return out


# BERT fixtures live in their own module, which builds on ModelShape and make_corpus above.
from ._testing_bert import make_bert_reranker_folder, make_wordpiece_tokenizer  # noqa: E402

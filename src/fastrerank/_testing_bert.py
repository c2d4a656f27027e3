"""Random-weight BERT cross-encoders (the ms-marco MiniLM / TinyBERT family), for tests and benchmarks.

Re-exported by :mod:`fastrerank.testing`. A folder written by :func:`make_bert_reranker_folder` is
an ordinary Hugging Face folder holding a ``BertForSequenceClassification`` with one label, a
WordPiece ``tokenizer.json`` built the way transformers' ``BertConverter`` builds one (BERT
normalizer with lower-casing, ``BertPreTokenizer``, ``[CLS] A [SEP] B [SEP]`` with token types 0
and 1), ``vocab.txt``, and the tokenizer configuration files. transformers loads it, and so does
:func:`fastrerank.convert`.
"""

from __future__ import annotations

import json
import os
import string
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from .testing import ModelShape, make_corpus, normal_weights, random_encoder_weights

__all__ = ["BERT_SPECIAL_TOKENS", "make_bert_reranker_folder", "make_wordpiece_tokenizer"]

# bert-base-uncased's layout, which the ms-marco cross-encoders share: [PAD] 0, [unused0-98],
# [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103.
BERT_SPECIAL_TOKENS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
_RESERVED = 104
_MAX_PIECE = 6


def _wordpiece_vocab(corpus: list[str], size: int) -> dict[str, int]:
    """Every character (and its ``##`` form), then the most frequent words and ``##`` pieces; deterministic."""
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for sentence in corpus:
        words.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(sentence)))
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for length in range(2, _MAX_PIECE + 1):
            for start in range(1, len(word) - length + 1):
                pieces["##" + word[start : start + length]] += count
    # Printable ASCII too, so that "[CLS]" written in a text gets the pieces "[", "cl", "##s", "]".
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation) | {c for w in words for c in w})
    vocab = dict(BERT_SPECIAL_TOKENS)
    vocab.update({f"[unused{i - 1}]": i for i in range(1, _RESERVED) if i not in BERT_SPECIAL_TOKENS.values()})
    ranked = chars + ["##" + c for c in chars]
    # Sort by count (weighted by length, as the Unigram fixture does), then by the piece itself,
    # so that ties are broken the same way on every run.
    ranked += [w for w, _ in sorted(words.items(), key=lambda item: (-item[1] * len(item[0]), item[0])) if len(w) > 1]
    ranked += [p for p, _ in sorted(pieces.items(), key=lambda item: (-item[1] * len(item[0]), item[0]))]
    for token in ranked:
        if len(vocab) >= size:
            break
        vocab.setdefault(token, len(vocab))
    return vocab


def make_wordpiece_tokenizer(vocab_size: int = 1000, seed: int = 0) -> Tokenizer:
    """Build an uncased BERT WordPiece tokenizer learnt from :func:`~fastrerank.testing.make_corpus`; deterministic.

    Special ids are bert-base-uncased's (``[PAD]``=0, ``[UNK]``=100, ``[CLS]``=101, ``[SEP]``=102,
    ``[MASK]``=103); pairs are encoded as ``[CLS] A [SEP] B [SEP]`` with token types 0 for the
    first text and its separators and 1 for the second text and the last ``[SEP]``.
    """
    vocab = _wordpiece_vocab(make_corpus(seed=seed), vocab_size)
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                      lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in BERT_SPECIAL_TOKENS])
    cls, sep = BERT_SPECIAL_TOKENS["[CLS]"], BERT_SPECIAL_TOKENS["[SEP]"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tokenizer


def _random_bert_weights(shape: ModelShape, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hidden = shape.hidden_size
    # The spreads of the XLM-R fixture, with BERT's two token types and its pooler + classifier.
    tensors = random_encoder_weights(shape, rng, prefix="bert.", token_types=2, token_type_std=0.5)
    proj_std = 1.0 / np.sqrt(hidden)
    tensors["bert.pooler.dense.weight"] = normal_weights(rng, hidden, hidden, std=2.0 * proj_std)
    tensors["bert.pooler.dense.bias"] = normal_weights(rng, hidden, std=0.1)
    tensors["classifier.weight"] = normal_weights(rng, 1, hidden, std=0.5)
    tensors["classifier.bias"] = np.zeros(1, dtype=np.float32)
    return tensors


def _bert_config(shape: ModelShape) -> dict[str, object]:
    return {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate_size,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": shape.max_position_embeddings,
        "num_attention_heads": shape.num_heads,
        "num_hidden_layers": shape.num_layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": shape.rows,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "torch_dtype": "float32",
    }


def make_bert_reranker_folder(
    folder: str | os.PathLike[str],
    shape: ModelShape | None = None,
    *,
    seed: int = 0,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write a random-weight ``BertForSequenceClassification`` reranker folder and return its path.

    ``shape.max_position_embeddings`` is the number of positions (BERT reserves none); the
    default shape is :meth:`ModelShape.bert_tiny`. ``tokenizer`` reuses one made by
    :func:`make_wordpiece_tokenizer`; ``seed`` seeds the weights.

    Example:
        >>> from fastrerank.testing import ModelShape, make_bert_reranker_folder
        >>> folder = make_bert_reranker_folder("/tmp/tiny-bert", ModelShape.bert_tiny())  # doctest: +SKIP
    """
    shape = shape or ModelShape.bert_tiny()
    tokenizer = tokenizer or make_wordpiece_tokenizer(shape.vocab_size)
    if tokenizer.get_vocab_size() > shape.rows:
        raise ValueError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the shape only {shape.rows} embedding rows")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_random_bert_weights(shape, seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(_bert_config(shape), indent=2))
    tokenizer.save(str(out / "tokenizer.json"))
    by_id = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda item: item[1])
    (out / "vocab.txt").write_text("".join(token + "\n" for token, _ in by_id), encoding="utf-8")
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
    tokenizer_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "strip_accents": None,
                        "tokenize_chinese_chars": True, "model_max_length": shape.max_position_embeddings,
                        "clean_up_tokenization_spaces": True, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (out / "fastrerank_testing.json").write_text(json.dumps({"shape": asdict(shape), "seed": seed}, indent=2))
    return out

"""Tokenize queries and documents once, as plain text, and only as much as will be used.

The tokenizer is configured once at load (no truncation, no padding, special-token strings read as
plain text) and never mutated, so one instance serves many threads. A query or document containing
the text ``<pad>`` or ``</s>`` gets ordinary pieces for it, as SentencePiece itself gives, never
a control id (a ``<pad>`` id inside a row would even make CTranslate2 number positions unlike
transformers, which skips pad ids). A BERT WordPiece tokenizer needs only the added-token matcher
turned off: its pre-tokenizer splits ``[CLS]`` into ``[``, ``cls``, ``]`` before the vocabulary is
looked at, so ``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]`` and ``[UNK]`` in a text are plain text,
as with transformers' ``split_special_tokens=True`` (tests/test_bert.py).

Queries and documents longer than the window rule can use are cut *before* tokenizing: at one
token per character, tokenizing a 10-million-character text costs gigabytes. A prefix of the text
is tokenized instead, and only tokens the whole text is known to share are kept: those of every
word the tokenizer's own normalizer and pre-tokenizer split off before the prefix's last word,
which may go on past the cut. A word is what the tokenizer makes one: a fixed notion of
whitespace would not do, as XLM-R's normalizer deletes some whitespace (U+000B, U+001C-U+001F),
so that ``ab<U+000B>cd`` is the one word ``▁abcd``. When that last word is long (a script written
without spaces), its first tokens are kept where the tokenization of a prefix longer by
``_CHECK_MARGIN`` characters agrees (a Unigram segmentation depends on nothing that far ahead).
The prefix grows until it holds enough tokens, but never past ``_MAX_CHARS_PER_TOKEN``
characters a token: a text that makes fewer tokens than that (megabytes of characters the
normalizer deletes; for BERT, words of over 100 characters, each of which WordPiece makes one
``[UNK]``) is scored on the tokens of its first characters.
Lone surrogates are replaced after the cut, and documents are tokenized a slice at a time into
compact ``int32`` arrays, so memory does not grow with the text's length and grows by only a few
bytes a token with the number of documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import CorruptModelError, InferenceError

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["TextEncoder", "replace_lone_surrogates"]

T = TypeVar("T")

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CHARS_PER_TOKEN_GUESS = 4  # XLM-R averages about 4 characters a token; the prefix doubles when short
_MAX_CHARS_PER_TOKEN = 32  # the prefix stops growing at this many characters per token wanted
_CHECK_MARGIN = 256  # characters past a cut inside a long word that the agreement check tokenizes
_SLICE = 256  # texts per tokenizer call: its Encoding objects cost ~100 bytes a token while they live
# Prefixed to a vocabulary piece that spells a special token, so that no text can match it: every
# SentencePiece-style pipeline (XLM-R's Metaspace pre-tokenizer) turns U+0020 into "▁" before the
# model sees a word.
_UNMATCHABLE = " "


def replace_lone_surrogates(text: str) -> str:
    """Replace unpaired UTF-16 surrogates (invalid in UTF-8, refused by tokenizers) with U+FFFD."""
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


class TextEncoder:
    """A ``tokenizers.Tokenizer`` read from ``tokenizer.json``, checked against the embedding table."""

    def __init__(self, tokenizer_file: Path, *, embedding_rows: int) -> None:
        tokenizer = _load_plain_text_tokenizer(tokenizer_file)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        if vocab_size > embedding_rows:
            # CTranslate2 does not check ids: an id past the table reads out of bounds, silently.
            raise CorruptModelError(
                f"the tokenizer has {vocab_size} tokens but the model only {embedding_rows} embedding rows"
            )
        self._tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.encode_many([text], max_tokens=None)[0].tolist()

    def encode_many(self, texts: Sequence[str], max_tokens: int | None) -> list[np.ndarray]:
        """Token ids (``int32`` arrays) of each text, without special tokens, each cut to its first ``max_tokens`` tokens."""
        if max_tokens is None:
            return self._encode_batch(texts)
        limit = max(max_tokens, 1) * _CHARS_PER_TOKEN_GUESS
        short = [i for i, text in enumerate(texts) if len(text) <= limit]
        result: list[np.ndarray] = [_EMPTY] * len(texts)
        for i, ids in zip(short, self._encode_batch([texts[i] for i in short])):
            result[i] = ids[:max_tokens]
        for i in (i for i, text in enumerate(texts) if len(text) > limit):
            result[i] = self._encode_prefix(texts[i], max_tokens, limit)
        return result

    def _encode_prefix(self, text: str, max_tokens: int, limit: int) -> np.ndarray:
        cap = max_tokens * _MAX_CHARS_PER_TOKEN
        while True:
            if limit >= len(text):
                return self._encode_batch([text])[0][:max_tokens]
            encoding = self._encode_one(text[:limit])  # never a copy of the whole text
            kept = _complete_words(encoding)
            long_word = kept < len(encoding.ids) and (encoding.offsets[kept][0] <= limit // 2 or limit >= cap)
            if kept < max_tokens and long_word:
                # Doubling the prefix would mostly lengthen this word again: keep its first tokens
                # where a longer prefix agrees.
                kept = max(kept, _agreeing(encoding, self._encode_one(text[: limit + _CHECK_MARGIN])))
            if kept >= max_tokens or limit >= cap:
                return np.asarray(encoding.ids[: min(kept, max_tokens)], dtype=np.int32)
            limit = min(limit * 2, cap)

    def _encode_one(self, text: str) -> Encoding:
        return _guarded(self._tokenizer.encode, replace_lone_surrogates(text), add_special_tokens=False)

    def _encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for first in range(0, len(texts), _SLICE):
            chunk = [replace_lone_surrogates(text) for text in texts[first : first + _SLICE]]
            encodings = _guarded(self._tokenizer.encode_batch_fast, chunk, add_special_tokens=False)
            out.extend(np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings)
        return out


def _load_plain_text_tokenizer(tokenizer_file: Path) -> Tokenizer:
    """The tokenizer of ``tokenizer_file``, made to read special-token strings in text as plain text.

    Two places turn the text ``<pad>`` into the pad id: the added-token matcher, which
    ``encode_special_tokens`` turns off (transformers' ``split_special_tokens=True``), and XLM-R's
    Unigram vocabulary itself, which holds ``<s>``, ``<pad>``, ``</s>``, ``<unk>`` and ``<mask>``
    as pieces of the best score, 0.0. Those pieces are renamed to strings no text can reach, with
    their ids and scores kept (the score of unknown characters derives from the lowest score), so
    the text gets the ordinary pieces SentencePiece gives it.
    """
    from tokenizers import Tokenizer

    try:
        state = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptModelError(f"{tokenizer_file.name} cannot be loaded: {err}") from err
    _hide_special_pieces(state)
    try:
        tokenizer = Tokenizer.from_str(json.dumps(state, ensure_ascii=False))
    except Exception as err:  # tokenizers raises plain Exception on malformed files
        raise CorruptModelError(f"{tokenizer_file.name} cannot be loaded: {err}") from err
    tokenizer.encode_special_tokens = True
    return tokenizer


def _hide_special_pieces(state: Any) -> None:
    """Rename, in a Unigram vocabulary and its added tokens, the pieces that spell a special token."""
    model = state.get("model") if isinstance(state, dict) else None
    added = state.get("added_tokens") if isinstance(state, dict) else None
    if not (isinstance(model, dict) and model.get("type") == "Unigram"
            and isinstance(model.get("vocab"), list) and isinstance(added, list)):
        return  # anything malformed is left for tokenizers to report
    specials = {token.get("content") for token in added if isinstance(token, dict) and token.get("special")}
    hidden = set()
    for piece in model["vocab"]:
        if isinstance(piece, list) and piece and piece[0] in specials:
            hidden.add(piece[0])
            piece[0] = _UNMATCHABLE + piece[0]
    for token in added:
        # Renamed alike, so the added token keeps the id of its piece instead of getting a new one.
        if isinstance(token, dict) and token.get("content") in hidden:
            token["content"] = _UNMATCHABLE + token["content"]


def _guarded(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Call into tokenizers, turning its failures, a Rust panic included, into ``InferenceError``."""
    try:
        return function(*args, **kwargs)
    except BaseException as err:
        # pyo3's PanicException derives from BaseException, not Exception: never let it escape.
        if type(err).__name__ == "PanicException" or isinstance(err, (TypeError, ValueError)):
            raise InferenceError(f"the tokenizer failed: {err}") from err
        raise


_EMPTY = np.zeros(0, dtype=np.int32)


def _complete_words(encoding: Encoding) -> int:
    """Number of tokens before the last word of ``encoding`` (all of them belong to complete words)."""
    word_ids = encoding.word_ids
    if not word_ids:
        return 0
    last = word_ids[-1]
    kept = len(word_ids)
    while kept and word_ids[kept - 1] == last:
        kept -= 1
    return kept


def _agreeing(encoding: Encoding, longer: Encoding) -> int:
    """Number of leading tokens on which two encodings of prefixes of one text agree, ids and offsets."""
    agreed = 0
    for ids, offsets in zip(zip(encoding.ids, longer.ids), zip(encoding.offsets, longer.offsets)):
        if ids[0] != ids[1] or offsets[0] != offsets[1]:
            break
        agreed += 1
    return agreed

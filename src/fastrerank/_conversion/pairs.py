"""What a converted folder records about pairs: special-token ids, the pair template, the unknown token.

The engine builds a row as ``before_query + query + between + window + after_window`` and gives
the window and what follows it the token type ``window_token_type`` (``fastrerank.json``'s
``pair_template``; see :mod:`fastrerank._engine.pair_template`). For BERT the template is read
from the model's own tokenizer, by encoding a pair with it: what its post-processor adds around
and between the two texts, and their token types, is what transformers'
``tokenizer(query, doc)`` gives, whichever post-processor type the file uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedModelError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["PairFacts", "template_from_tokenizer"]


@dataclass(frozen=True)
class PairFacts:
    """The pair facts a family records in ``fastrerank.json``, and the unknown token CTranslate2's config names."""

    special_tokens: dict[str, int]
    pair_template: dict[str, Any]
    unk_token: str


def template_from_tokenizer(tokenizer: Tokenizer, *, token_type_rows: int) -> dict[str, Any]:
    """The ``pair_template`` record of ``tokenizer``'s pair encoding (its post-processor's template).

    Raises:
        UnsupportedModelError: the tokenizer builds pairs in a way the engine cannot reproduce:
            no special token before the first text or between the two, types other than 0 for
            the first text and one type for the second, a type the model has no row for.
    """
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encoding = tokenizer.encode("a", "b", add_special_tokens=True)
    sequences, ids, types = encoding.sequence_ids, encoding.ids, encoding.type_ids
    first = [i for i, sequence in enumerate(sequences) if sequence == 0]
    second = [i for i, sequence in enumerate(sequences) if sequence == 1]
    shown = " ".join(f"{token}:{kind}" for token, kind in zip(encoding.tokens, types))
    problem = None
    if not first or not second or first != list(range(first[0], first[-1] + 1)) or second[0] < first[-1]:
        problem = "the two texts are not kept whole and in order"
    else:
        before, between, after = range(first[0]), range(first[-1] + 1, second[0]), range(second[-1] + 1, len(ids))
        window_types = {types[i] for i in (*range(second[0], second[-1] + 1), *after)}
        if not before or not between:
            problem = "a special token before the first text and between the two is expected"
        elif {types[i] for i in (*before, *first, *between)} != {0} or len(window_types) != 1:
            problem = "token type 0 up to the second text and one type from there is expected"
        elif max(window_types) >= token_type_rows:
            problem = f"the second text's token type has no row in the token-type table of {token_type_rows} rows"
    if problem:
        raise UnsupportedModelError(f"tokenizer.json builds pairs as {shown!r}: {problem}")
    return {
        "before_query": [ids[i] for i in before],
        "between": [ids[i] for i in between],
        "after_window": [ids[i] for i in after],
        "window_token_type": types[second[0]],
    }

"""How a (query, window) pair becomes one row of ids, and the token types of a batch of rows: pure.

A row is ``before_query + query + between + window + after_window``: XLM-R's
``<s> q </s></s> w </s>`` (4 special tokens) or BERT's ``[CLS] q [SEP] w [SEP]`` (3). The
converted folder records the template (``fastrerank.json``'s ``pair_template``, read from the
model's own tokenizer at conversion); this module only applies it. BERT also gives the window
and the tokens after it token type 1, and the query part 0, as ``tokenizer(query, doc)`` does.
Token types are found again from a row's ids: the window starts after the first ``between``
token at or past ``before_query``, which is exact because a query never holds that id (checked
when the prefix is built; text cannot produce it, see :mod:`fastrerank._engine.tokenization`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InferenceError

__all__ = ["PairTemplate"]


@dataclass(frozen=True)
class PairTemplate:
    """The special ids around and between the two parts of a row, and the window's token type.

    Example:
        >>> bert = PairTemplate(before=(101,), between=(102,), after=(102,), window_token_type=1)
        >>> bert.row(np.array([7, 8]), np.array([9])).tolist(), bert.specials_per_pair
        ([101, 7, 8, 102, 9, 102], 3)
    """

    before: tuple[int, ...]
    between: tuple[int, ...]
    after: tuple[int, ...]
    window_token_type: int = 0

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PairTemplate:
        """From ``fastrerank.json``'s ``pair_template`` (already validated by ``model_format``)."""
        return cls(before=tuple(record["before_query"]), between=tuple(record["between"]),
                   after=tuple(record["after_window"]), window_token_type=int(record["window_token_type"]))

    @property
    def specials_per_pair(self) -> int:
        """Special tokens a row adds to the query's and window's: 4 for XLM-R, 3 for BERT."""
        return len(self.before) + len(self.between) + len(self.after)

    @property
    def uses_token_types(self) -> bool:
        """Whether rows need token types (every token of an XLM-R row has type 0: none are passed)."""
        return self.window_token_type != 0

    def prefix(self, query_ids: np.ndarray) -> np.ndarray:
        """``before_query + query + between`` as int32: the part every window of a query shares.

        Raises:
            InferenceError: the query holds the separator id, so token types could not be found again.
        """
        if self.uses_token_types and np.any(np.asarray(query_ids) == self.between[0]):
            raise InferenceError(f"the query's tokens hold the separator id {self.between[0]}; expected plain text ids")
        return np.concatenate((self.before, query_ids, self.between)).astype(np.int32)

    @property
    def suffix(self) -> np.ndarray:
        """``after_window`` as int32."""
        return np.asarray(self.after, dtype=np.int32)

    def row(self, query_ids: np.ndarray, window_ids: np.ndarray) -> np.ndarray:
        """One row's ids (int32): ``before_query + query + between + window + after_window``."""
        return np.concatenate((self.prefix(query_ids), window_ids, self.suffix)).astype(np.int32)

    def token_types(self, ids: np.ndarray) -> np.ndarray:
        """Token types of right-padded rows ``ids`` (``[rows, width]``): 0 up to ``between``, then the window's type.

        Padding gets the window's type too; the encoder masks it out anyway.
        """
        start = len(self.before)
        is_separator = ids[:, start:] == self.between[0]
        if not is_separator.any(axis=1).all():
            raise InferenceError("a row lacks the separator of its pair template")
        window_start = start + np.argmax(is_separator, axis=1) + len(self.between)
        positions = np.arange(ids.shape[1])
        return np.where(positions[None, :] >= window_start[:, None], self.window_token_type, 0).astype(np.int32)

"""The sliding-window rule that cuts a document into model-sized chunks: pure functions.

For a query of ``q`` tokens and a model run at ``max_length`` tokens, a chunk holds
``W = max_length - q - specials`` document tokens, where ``specials`` is the number of special
tokens the model's pair template adds: 4 for XLM-R (``<s> query </s></s> chunk </s>``), 3 for
BERT (``[CLS] query [SEP] chunk [SEP]``). Consecutive chunks overlap by ``o = min(overlap_tokens, W // 4)``
tokens (as the BCE reference does, so a long query never makes the step tiny) and start
``s = W - o`` tokens apart. Chunks are produced until one reaches the end of the document, at most
``max_chunks_per_doc`` of them; the rest of the document is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInputError

__all__ = ["WindowPlan", "chunk_spans", "plan_windows"]


@dataclass(frozen=True)
class WindowPlan:
    """How documents are cut for one query: window size, overlap and step, in tokens."""

    window: int
    overlap: int
    step: int
    max_chunks: int

    @property
    def max_document_tokens(self) -> int:
        """Document tokens the chunks can cover: anything past this is never looked at."""
        return self.window + (self.max_chunks - 1) * self.step


def plan_windows(max_length: int, query_tokens: int, overlap_tokens: int, max_chunks: int, *,
                 specials_per_pair: int) -> WindowPlan:
    """Compute the window rule for a query of ``query_tokens`` tokens and a pair template adding ``specials_per_pair``.

    Raises:
        InvalidInputError: the query leaves no room for document tokens in ``max_length``.
    """
    window = max_length - query_tokens - specials_per_pair
    if window < 1:
        raise InvalidInputError(
            f"max_length={max_length} leaves no room for documents after a {query_tokens}-token query "
            f"(window W = max_length - len(query) - {specials_per_pair} = {window}; expected >= 1)"
        )
    overlap = min(overlap_tokens, window // 4)
    return WindowPlan(window=window, overlap=overlap, step=window - overlap, max_chunks=max_chunks)


def chunk_spans(length: int, plan: WindowPlan) -> list[tuple[int, int]]:
    """``(start, end)`` token spans of a document of ``length`` tokens; one empty span when it is empty."""
    spans = []
    start = 0
    while True:
        spans.append((start, min(start + plan.window, length)))
        if start + plan.window >= length or len(spans) == plan.max_chunks:
            return spans
        start += plan.step

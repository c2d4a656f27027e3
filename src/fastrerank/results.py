"""Immutable result types returned by :meth:`fastrerank.Reranker.rank`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

__all__ = ["RankedDocument", "Ranking"]


_SHOWN_TEXT = 40  # characters of a document a repr shows
_SHOWN_RESULTS = 3  # results a Ranking's repr shows


@dataclass(frozen=True, repr=False)
class RankedDocument:
    """One document of a ranking.

    Attributes:
        index: position of the document in the ``documents`` the caller passed.
        score: relevance in [0, 1] (the sigmoid of the best window's logit), or the raw logit
            when the ranking was made with ``raw=True``.
        document: the document's text when ``return_documents=True``, else ``None``.
    """

    index: int
    score: float
    document: str | None = None

    def __repr__(self) -> str:
        """``RankedDocument(index=2, score=0.98, document='The giant panda is a bear native to...')``: a text is cut to 40 characters."""
        if self.document is None:
            return f"RankedDocument(index={self.index}, score={self.score!r})"
        text = self.document if len(self.document) <= _SHOWN_TEXT else self.document[: _SHOWN_TEXT - 3] + "..."
        return f"RankedDocument(index={self.index}, score={self.score!r}, document={text!r})"


@dataclass(frozen=True, repr=False)
class Ranking(Sequence[RankedDocument]):
    """Documents best first, with what it cost to compute them.

    A ``Ranking`` is a read-only sequence of :class:`RankedDocument`.

    Attributes:
        results: the ranked documents, best first; ties keep input order.
        tokens: tokens run through the model, special tokens included, padding excluded
            (what hosted APIs report as input tokens).
        query_truncated: the query was longer than ``max_length * 3 // 4`` tokens and was cut.
    """

    results: tuple[RankedDocument, ...]
    tokens: int
    query_truncated: bool = False

    @overload
    def __getitem__(self, item: int) -> RankedDocument: ...

    @overload
    def __getitem__(self, item: slice) -> tuple[RankedDocument, ...]: ...

    def __getitem__(self, item: int | slice) -> RankedDocument | tuple[RankedDocument, ...]:
        return self.results[item]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[RankedDocument]:
        return iter(self.results)

    def __repr__(self) -> str:
        """``<Ranking 5 documents, 120 tokens: #2 0.9812, #0 0.4021, #4 0.0133, ... 2 more>``: the best three.

        Each is shown as its index and its score to four decimals, never its text; ``query
        truncated`` is added when the query was cut.
        """
        count = len(self.results)
        head = f"<Ranking {count} document{'' if count == 1 else 's'}, {self.tokens} tokens"
        if self.query_truncated:
            head += ", query truncated"
        if not count:
            return head + ">"
        shown = ", ".join(f"#{item.index} {item.score:.4f}" for item in self.results[:_SHOWN_RESULTS])
        more = f", ... {count - _SHOWN_RESULTS} more" if count > _SHOWN_RESULTS else ""
        return f"{head}: {shown}{more}>"

    def to_dicts(self) -> list[dict[str, object]]:
        """The results as plain dicts (``index``, ``score`` and ``document`` when present)."""
        out: list[dict[str, object]] = []
        for item in self.results:
            row: dict[str, object] = {"index": item.index, "score": item.score}
            if item.document is not None:
                row["document"] = item.document
            out.append(row)
        return out

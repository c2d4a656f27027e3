"""Immutable result types returned by :meth:`fastrerank.Reranker.rank`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

__all__ = ["RankedDocument", "Ranking"]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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

    def to_dicts(self) -> list[dict[str, object]]:
        """The results as plain dicts (``index``, ``score`` and ``document`` when present)."""
        out: list[dict[str, object]] = []
        for item in self.results:
            row: dict[str, object] = {"index": item.index, "score": item.score}
            if item.document is not None:
                row["document"] = item.document
            out.append(row)
        return out

"""Readable reprs: a Reranker says what it runs and whether it is closed; results never dump whole texts."""

from __future__ import annotations

from pathlib import Path

from fastrerank import RankedDocument, Ranking, Reranker


def test_a_reranker_shows_model_device_compute_type_threads_replicas_max_length_and_state(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    link = tmp_path / "tiny"
    link.symlink_to(converted("tiny"))  # a short path, shown as given
    reranker = Reranker(str(link), device="cpu", threads=1, max_length=128)
    assert repr(reranker) == f"<Reranker model={str(link)!r} device='cpu' compute_type='float32' threads=1 replicas=1 max_length=128 open>"
    reranker.close()
    assert reranker.closed and reranker.compute_type == "float32"  # still readable once the model is released
    assert repr(reranker).endswith(" threads=1 replicas=1 max_length=128 closed>")


def test_a_long_model_name_is_cut(converted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deep = tmp_path / ("d" * 120)
    deep.symlink_to(converted("tiny"))
    with Reranker(deep, device="cpu", threads=2) as reranker:
        shown = repr(reranker)
        assert shown.startswith(f"<Reranker model={repr(str(deep))[:77]}... device='cpu'") and len(shown) < 200
        assert reranker.threads == 2


def test_a_ranking_shows_its_count_tokens_and_best_three_scores() -> None:
    results = tuple(RankedDocument(index, score) for index, score in [(2, 0.98123), (0, 0.40214), (4, 0.0133), (1, 0.002), (3, 0.0)])
    assert repr(Ranking(results, tokens=120)) == "<Ranking 5 documents, 120 tokens: #2 0.9812, #0 0.4021, #4 0.0133, ... 2 more>"
    assert repr(Ranking(results[:1], tokens=9, query_truncated=True)) == "<Ranking 1 document, 9 tokens, query truncated: #2 0.9812>"
    assert repr(Ranking((), tokens=0)) == "<Ranking 0 documents, 0 tokens>"
    assert repr(Ranking((RankedDocument(7, -3.25),), tokens=4)) == "<Ranking 1 document, 4 tokens: #7 -3.2500>"  # raw=True


def test_a_ranked_document_cuts_its_text() -> None:
    long = "The giant panda is a bear native to South Central China. " * 1000
    assert repr(RankedDocument(3, 0.5, long)) == "RankedDocument(index=3, score=0.5, document='The giant panda is a bear native to S...')"
    assert repr(RankedDocument(0, 0.25, "short\ntext")) == r"RankedDocument(index=0, score=0.25, document='short\ntext')"
    assert repr(RankedDocument(1, 0.125)) == "RankedDocument(index=1, score=0.125)"


def test_a_real_ranking_repr_never_holds_the_documents(tiny_reranker: Reranker) -> None:
    texts = ["apple pie " * 200, "car engine " * 200, "fruit salad"]
    ranking = tiny_reranker.rank("apple fruit", texts, return_documents=True)
    shown = repr(ranking)
    assert shown.startswith(f"<Ranking 3 documents, {ranking.tokens} tokens: #{ranking[0].index} ") and len(shown) < 120
    assert all(len(repr(item)) < 120 for item in ranking)

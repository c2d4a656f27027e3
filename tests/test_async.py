"""``arank`` / ``ascore`` / ``ascore_pairs``: the sync results, computed without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

import fastrerank
from fastrerank import InvalidInputError, InvalidTypeError, Reranker
from fastrerank.testing import make_corpus

QUERY = "apple fruit health"
DOCS = [" ".join(make_corpus(60, seed=5)[i : i + 3]) for i in range(0, 60, 3)]
PAIRS = [(query, doc) for query in (QUERY, "panda bamboo") for doc in DOCS]

ProgressCall = Callable[[Callable[[int, int], None]], Awaitable[object]]


def test_coroutines_equal_the_sync_methods(tiny_reranker: Reranker) -> None:
    async def main() -> tuple[object, ...]:
        return await asyncio.gather(tiny_reranker.arank(QUERY, DOCS, 5, return_documents=True),
                                    tiny_reranker.ascore(QUERY, DOCS, raw=True),
                                    tiny_reranker.ascore_pairs(PAIRS))

    ranking, scores, pair_scores = asyncio.run(main())
    assert ranking == tiny_reranker.rank(QUERY, DOCS, 5, return_documents=True)
    np.testing.assert_array_equal(scores, tiny_reranker.score(QUERY, DOCS, raw=True))  # type: ignore[arg-type]
    np.testing.assert_array_equal(pair_scores, tiny_reranker.score_pairs(PAIRS))  # type: ignore[arg-type]


def _loop_ticks_between_batches(call: ProgressCall) -> list[bool]:
    """Run ``call(progress)`` beside a ticker task; after each batch, wait (bounded) for the loop to tick again.

    A coroutine that ran the ranking on the loop's own thread would leave the ticker frozen for the
    whole ranking: the first wait would run out and every entry after it would be False.
    """
    ticks = [0]
    advanced: list[bool] = []

    def progress(done: int, total: int) -> None:
        if advanced and not advanced[-1]:
            advanced.append(False)  # the loop was already seen blocked: do not wait again
            return
        seen = ticks[0]
        deadline = time.monotonic() + 10
        while ticks[0] == seen and time.monotonic() < deadline:
            time.sleep(0.001)
        advanced.append(ticks[0] > seen)

    async def main() -> None:
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks[0] += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        try:
            await call(progress)
        finally:
            stop.set()
            await task

    asyncio.run(main())
    return advanced


@pytest.mark.parametrize("method", ["arank", "ascore", "ascore_pairs"])
def test_the_event_loop_keeps_running_during_a_long_ranking(converted, method: str) -> None:  # type: ignore[no-untyped-def]
    # One window per batch: many batches, each a point where the worker checks that the loop ticked.
    with Reranker(converted("tiny"), threads=1, batch_tokens=1) as reranker:
        calls: dict[str, ProgressCall] = {
            "arank": lambda progress: reranker.arank(QUERY, DOCS, progress=progress),
            "ascore": lambda progress: reranker.ascore(QUERY, DOCS, progress=progress),
            "ascore_pairs": lambda progress: reranker.ascore_pairs(PAIRS, progress=progress),
        }
        advanced = _loop_ticks_between_batches(calls[method])
    assert len(advanced) >= len(DOCS) and all(advanced)


def test_the_ranking_runs_off_the_loop_thread(tiny_reranker: Reranker) -> None:
    threads: list[threading.Thread] = []

    async def main() -> None:
        await tiny_reranker.arank(QUERY, DOCS, progress=lambda done, total: threads.append(threading.current_thread()))

    asyncio.run(main())
    assert threads and all(thread is not threading.main_thread() for thread in threads)


def test_errors_reach_the_awaiting_task(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidTypeError, match=r"^documents\[1\] must be str, got NoneType$"):
        asyncio.run(tiny_reranker.arank(QUERY, ["a", None]))  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match=r"^top_n must be >= 1, got 0$"):
        asyncio.run(tiny_reranker.arank(QUERY, DOCS, 0))
    with pytest.raises(InvalidInputError, match=r"^pairs\[0\] must hold 2 items \(query, document\), got 1$"):
        asyncio.run(tiny_reranker.ascore_pairs([("q",)]))  # type: ignore[list-item]


def test_module_level_arank_shares_the_rank_cache(converted) -> None:  # type: ignore[no-untyped-def]
    folder = str(converted("tiny"))
    try:
        ranking = asyncio.run(fastrerank.arank(QUERY, DOCS, 3, model=folder))
        assert ranking == fastrerank.rank(QUERY, DOCS, 3, model=folder)
        assert len(fastrerank._api._cache) == 1
    finally:
        fastrerank.clear_cache()

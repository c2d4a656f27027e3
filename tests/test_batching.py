"""Property tests of length-aware batching (``fastrerank._engine.batching.plan_batches``), a pure function.

That the reranker's scores do not depend on ``batch_tokens`` is tested with a real model in
test_reranker.py; here only the packing contract is checked.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fastrerank._engine.batching import plan_batches

FAST = settings(max_examples=200, deadline=None)

# Rows always hold at least the pair template's specials; budgets are validated >= 1.
lengths_lists = st.lists(st.integers(1, 600), max_size=60)
budgets = st.integers(1, 4096)


@FAST
@given(lengths_lists, budgets)
def test_batches_partition_the_rows(lengths: list[int], budget: int) -> None:
    batches = plan_batches(lengths, budget)
    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(batches), "no empty batch"


@FAST
@given(lengths_lists, budgets)
def test_each_batch_fits_the_budget_unless_one_row_exceeds_it(lengths: list[int], budget: int) -> None:
    for batch in plan_batches(lengths, budget):
        longest = max(lengths[index] for index in batch)
        if longest > budget:
            assert len(batch) == 1, "a row over the budget runs alone"
        else:
            assert len(batch) * longest <= budget


@FAST
@given(lengths_lists, budgets)
def test_rows_come_longest_first_and_ties_keep_their_order(lengths: list[int], budget: int) -> None:
    flat = [index for batch in plan_batches(lengths, budget) for index in batch]
    assert flat == sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    for batch in plan_batches(lengths, budget):
        assert lengths[batch[0]] == max(lengths[index] for index in batch)  # the first row sets the padded width


@FAST
@given(lengths_lists, budgets)
def test_a_batch_closes_only_when_the_next_row_would_not_fit(lengths: list[int], budget: int) -> None:
    """Greedy packing: no batch could have taken the next batch's first row within the budget."""
    batches = plan_batches(lengths, budget)
    for batch in batches[:-1]:
        assert (len(batch) + 1) * lengths[batch[0]] > budget


@FAST
@given(lengths_lists, budgets)
def test_planning_is_deterministic_and_leaves_the_input_alone(lengths: list[int], budget: int) -> None:
    before = list(lengths)
    assert plan_batches(lengths, budget) == plan_batches(tuple(lengths), budget)
    assert lengths == before


def test_examples() -> None:
    assert plan_batches([], 100) == []
    assert plan_batches([10, 30, 20, 30], 60) == [[1, 3], [2, 0]]
    assert plan_batches([10, 10, 10, 10], 25) == [[0, 1], [2, 3]]
    assert plan_batches([500, 5, 5], 100) == [[0], [1, 2]]


parts_counts = st.integers(2, 16)


@FAST
@given(lengths_lists, budgets, parts_counts)
def test_with_parts_the_rows_still_fit_the_budget_and_come_longest_first(lengths: list[int], budget: int, parts: int) -> None:
    batches = plan_batches(lengths, budget, parts=parts)
    flat = [index for batch in batches for index in batch]
    assert flat == sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch[0]] <= budget


@FAST
@given(lengths_lists, budgets, parts_counts)
def test_with_parts_two_rows_or_more_never_share_one_batch(lengths: list[int], budget: int, parts: int) -> None:
    """Two replicas or more: a call of several rows is never left to a single replica."""
    assert len(plan_batches(lengths, budget, parts=parts)) >= min(2, len(lengths))


@FAST
@given(lengths_lists, budgets, parts_counts)
def test_parts_change_nothing_in_a_call_of_two_full_batches_a_part(lengths: list[int], budget: int, parts: int) -> None:
    if budget <= -(-sum(lengths) // (2 * parts)):
        assert plan_batches(lengths, budget, parts=parts) == plan_batches(lengths, budget)


def test_parts_examples() -> None:
    # Eight rows of ~100 tokens fit one 1024-token batch; two replicas get two batches of two rows each.
    assert plan_batches([100] * 8, 1024, parts=2) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert plan_batches([100] * 8, 1024, parts=4) == [[i] for i in range(8)]
    assert plan_batches([300], 1024, parts=2) == [[0]]  # one row cannot be shared
    assert plan_batches([400, 10, 10], 1024, parts=2) == [[0], [1, 2]]  # never below the longest row
    assert plan_batches([300] * 64, 512, parts=2) == plan_batches([300] * 64, 512)  # a big call: the budget decides


def test_a_call_is_not_split_below_the_floor_a_gpu_needs() -> None:
    # 8 short rows, 4 replicas: on the CPU each gets two small batches; with a 2048-token floor
    # (CUDA) they stay one batch, and a call big enough to split is split no finer than the floor.
    short = [140] * 8
    assert len(plan_batches(short, 8192, parts=4)) == 8
    assert plan_batches(short, 8192, parts=4, min_split_tokens=2048) == [list(range(8))]
    full = [512] * 16  # 8192 tokens: a share of 1024 a batch, raised to the floor
    assert [len(batch) for batch in plan_batches(full, 8192, parts=4, min_split_tokens=2048)] == [4] * 4
    big = [512] * 40  # 20480 tokens: a share of 2560 a batch, above the floor
    assert [len(batch) for batch in plan_batches(big, 8192, parts=4, min_split_tokens=2048)] == [5] * 8
    assert plan_batches(big, 1024, parts=4, min_split_tokens=2048) == plan_batches(big, 1024)  # the budget still bounds


def test_a_cuda_reranker_splits_calls_no_finer_than_the_floor(converted) -> None:  # type: ignore[no-untyped-def]
    # The wiring in Reranker: a CPU model made to plan as a CUDA one (4 replicas, 8 short documents):
    # one batch, where the CPU's rule gives each replica its share.
    from fastrerank import Reranker

    docs = [f"apple pie number {i}" for i in range(8)]
    with Reranker(converted("tiny"), device="cpu", threads=4, replicas=4, batch_tokens=8192) as reranker:
        calls: list[tuple[int, int]] = []
        reranker.rank("apple", docs, progress=lambda done, total: calls.append((done, total)))
        assert len(calls) == 8  # one batch of one row each: the CPU's split
        reranker.device = "cuda"
        calls.clear()
        reranker.rank("apple", docs, progress=lambda done, total: calls.append((done, total)))
        assert calls == [(8, 8)]  # one batch

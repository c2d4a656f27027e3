"""Property tests of the window rule's pure functions (``fastrerank._engine.chunking``).

No model, no tokenizer: ``plan_windows`` and ``chunk_spans`` are checked against the rule their
module docstring states (W = max_length - query - specials, overlap min(overlap_tokens, W // 4),
step W - overlap, at most ``max_chunks`` windows, stop at the first window reaching the end).
Scores over real windows are checked against transformers in test_reranker.py and test_bert.py.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastrerank import InvalidInputError
from fastrerank._engine.chunking import WindowPlan, chunk_spans, plan_windows

FAST = settings(max_examples=150, deadline=None)

# The domain the reranker calls these with: overlap_tokens and max_chunks_per_doc are validated
# (>= 0, >= 1), specials come from the pair template (3 for BERT, 4 for XLM-R).
max_lengths = st.integers(2, 1024)
specials = st.sampled_from([3, 4])
overlaps = st.integers(0, 512)
max_chunks = st.integers(1, 12)


@st.composite
def plans(draw: st.DrawFn) -> tuple[WindowPlan, int, int, int, int]:
    """A valid plan and the arguments it was made from: (plan, max_length, query, overlap_tokens, specials)."""
    max_length, special = draw(max_lengths), draw(specials)
    assume(max_length - special >= 1)
    query = draw(st.integers(0, max_length - special - 1))
    overlap = draw(overlaps)
    plan = plan_windows(max_length, query, overlap, draw(max_chunks), specials_per_pair=special)
    return plan, max_length, query, overlap, special


@FAST
@given(plans())
def test_the_plan_follows_the_stated_rule(case: tuple[WindowPlan, int, int, int, int]) -> None:
    plan, max_length, query, overlap, special = case
    assert plan.window == max_length - query - special >= 1
    assert plan.window + query + special == max_length  # a full window plus query and specials fills max_length
    assert plan.overlap == min(overlap, plan.window // 4)
    assert 0 <= plan.overlap < plan.window
    assert plan.step == plan.window - plan.overlap >= 1
    assert plan.max_document_tokens == plan.window + (plan.max_chunks - 1) * plan.step


@FAST
@given(max_length=max_lengths, special=specials, extra=st.integers(0, 64), overlap=overlaps, chunks=max_chunks)
def test_a_query_that_leaves_no_window_is_refused(max_length: int, special: int, extra: int, overlap: int, chunks: int) -> None:
    query = max(0, max_length - special) + extra  # window = max_length - query - special <= 0
    with pytest.raises(InvalidInputError, match=rf"max_length={max_length} leaves no room .* {query}-token query") as info:
        plan_windows(max_length, query, overlap, chunks, specials_per_pair=special)
    assert f"= {max_length - query - special}; expected >= 1" in str(info.value)


@FAST
@given(plans(), st.integers(0, 5000))
def test_spans_tile_the_document_with_the_planned_overlap(case: tuple[WindowPlan, int, int, int, int], length: int) -> None:
    plan = case[0]
    spans = chunk_spans(length, plan)
    assert spans, "every document, even an empty one, gets a window"
    assert spans[0][0] == 0
    for start, end in spans:
        assert 0 <= start <= end <= length
        assert end - start <= plan.window  # query + specials + window never exceed max_length
    for (start, end), (next_start, next_end) in zip(spans, spans[1:]):
        assert end - start == plan.window, "only the last window may be short"
        assert next_start - start == plan.step
        assert end - next_start == plan.overlap  # consecutive windows overlap by exactly the planned overlap
        assert next_end > end, "every window adds tokens the previous one did not cover"
    assert len(spans) <= plan.max_chunks


@FAST
@given(plans(), st.integers(0, 5000))
def test_spans_cover_the_document_up_to_the_planned_limit(case: tuple[WindowPlan, int, int, int, int], length: int) -> None:
    plan = case[0]
    spans = chunk_spans(length, plan)
    covered: set[int] = set()
    for start, end in spans:
        covered.update(range(start, end))
    assert covered == set(range(min(length, plan.max_document_tokens)))
    # The count is the fewest windows that reach the end, capped by max_chunks.
    needed = 1 + max(0, -(-(length - plan.window) // plan.step))
    assert len(spans) == min(needed, plan.max_chunks)
    if length > plan.max_document_tokens:
        assert spans[-1][1] == plan.max_document_tokens


@FAST
@given(plans(), st.integers(0, 5000))
def test_cutting_a_document_to_the_limit_changes_no_span(case: tuple[WindowPlan, int, int, int, int], length: int) -> None:
    """The reranker tokenizes documents only up to ``max_document_tokens``: the spans must not depend on the rest."""
    plan = case[0]
    assert chunk_spans(min(length, plan.max_document_tokens), plan) == chunk_spans(length, plan)


def test_an_empty_document_gets_one_empty_span() -> None:
    plan = plan_windows(16, 3, 2, 4, specials_per_pair=4)
    assert (plan.window, plan.overlap, plan.step) == (9, 2, 7)
    assert chunk_spans(0, plan) == [(0, 0)]
    assert chunk_spans(9, plan) == [(0, 9)]
    assert chunk_spans(10, plan) == [(0, 9), (7, 10)]
    assert chunk_spans(100, plan) == [(0, 9), (7, 16), (14, 23), (21, 30)]

"""Length-aware packing of rows into batches under a padded-token budget: pure functions."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches"]


def plan_batches(lengths: Sequence[int], max_batch_tokens: int, *, parts: int = 1,
                 min_split_tokens: int = 0) -> list[list[int]]:
    """Group row indices into batches, longest rows first, so that ``rows * longest <= max_batch_tokens``.

    Sorting by length keeps padding small; the budget bounds the memory a batch needs whatever
    the number of documents. A row longer than the budget gets a batch of its own.

    ``parts`` is how many batches can run at once (encoder replicas). A call too small to give
    each part two full batches gets a budget of half a part's share of its tokens (never less than
    its longest row): a few short documents are then spread over every replica, and the batches
    taken last are small, so that no replica is left with much to do after the others are done.
    Batching short rows together saves little on a replica of one thread. A GPU is different: a
    batch below ``min_split_tokens`` takes about as long as a bigger one, so the budget a call is
    split with never drops below that (``max_batch_tokens`` still bounds it, and a call's last
    batch may be smaller).
    """
    if parts > 1 and lengths:
        share = -(-sum(lengths) // (2 * parts))  # ceil
        max_batch_tokens = min(max_batch_tokens, max(share, max(lengths), min_split_tokens))
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Rows come longest first, so the batch's padded width is its first row's length.
        if current and (len(current) + 1) * lengths[current[0]] > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches

"""Size a Ray Data actor pool so that it runs, and cut the input so that every actor gets work.

Two traps of a Ray Data job, each checked or fixed before it starts:

* **Too many actors hang.** An actor pool holds its CPUs for the whole job, and Ray Data's read
  and write tasks need a CPU of their own (one each by default). With actors x ``num_cpus``
  equal to the cluster's CPUs, nothing is left to read the input: the job makes no progress,
  and Ray only gives up after its own no-progress timeout (30 minutes in Ray 2.60).
  :func:`actor_pool_size` checks the rule actors x ``num_cpus`` <= CPUs - 1 up front.
* **A small input goes to one actor.** Ray hands an actor whole blocks, and reads a Parquet file
  of a few MiB as one block (even with ``override_num_blocks``), so the other actors idle.
  :func:`spread_over_actors` cuts the input into a few blocks per actor, sized from its row count.

Both only import Ray when called.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import TYPE_CHECKING

from .._validation import check_int
from ..errors import InvalidInputError, InvalidTypeError, describe_value

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["BLOCKS_PER_ACTOR", "actor_pool_size", "rows_per_block", "spread_over_actors"]

# A few blocks per actor rather than one: an actor that finishes early takes another block, so a
# slow block (long documents) does not leave the others idle at the end of the job.
BLOCKS_PER_ACTOR = 4
# Cap on a block's rows, so that a large input is not merged into a few huge blocks (memory per
# task, and nothing left to balance); a few seconds of scoring per block on a CPU.
DEFAULT_MAX_ROWS_PER_BLOCK = 4096
# CPUs left to Ray Data's read, shuffle and write tasks, each of which reserves one by default.
_RESERVED_CPUS = 1


def actor_pool_size(num_cpus: float = 1, *, actors: int | None = None, cluster_cpus: float | None = None) -> int:
    """The number of scoring actors that fit next to Ray Data's own tasks: as many as fit, or ``actors`` checked.

    The rule: ``actors * num_cpus <= cluster_cpus - 1``, leaving one CPU for reading and writing.
    A pool that breaks it does not fail in Ray: the job waits for a CPU that never comes free.

    Args:
        num_cpus: the CPUs each actor reserves (``map_batches(num_cpus=...)``); a fraction such as
            0.5 lets two actors share a CPU.
        actors: the pool size you want; ``None`` returns the largest that fits.
        cluster_cpus: the CPUs to plan for; ``None`` asks the running Ray (``ray.init()`` first).
            On an autoscaling cluster, pass the CPUs it scales up to: Ray only reports the nodes
            that are up.

    Raises:
        InvalidInputError: naming ``actors`` or ``num_cpus`` when the pool does not fit, with
            the largest that does; naming ``cluster_cpus`` when Ray is not initialized.

    Example:
        >>> actor_pool_size(num_cpus=1, cluster_cpus=8)
        7
        >>> actor_pool_size(num_cpus=0.5, cluster_cpus=2)
        2
    """
    num_cpus = _check_cpus("num_cpus", num_cpus)
    if actors is not None:
        actors = check_int("actors", actors, minimum=1)
    cpus = _cluster_cpus() if cluster_cpus is None else _check_cpus("cluster_cpus", cluster_cpus)
    spare = cpus - _RESERVED_CPUS
    rule = (f"the cluster has {cpus:g} CPUs and one stays free for Ray Data to read and write "
            "(actors x num_cpus <= CPUs - 1); otherwise the job waits for a CPU that never comes free")
    if num_cpus > spare:
        raise InvalidInputError(f"num_cpus={num_cpus:g} does not fit even one actor: {rule}; "
                                f"pass num_cpus <= {max(spare, 0):g} or start Ray with more CPUs")
    if num_cpus == 0:
        if actors is None:
            raise InvalidInputError("actors must be given when num_cpus=0: actors that reserve no CPU "
                                    "are not limited by the CPUs, so choose their number yourself")
        return actors
    fit = math.floor(spare / num_cpus + 1e-9)  # 0.1 x 10 is 1.0000000000000002
    if actors is not None and actors > fit:
        raise InvalidInputError(f"actors={actors} x num_cpus={num_cpus:g} needs {actors * num_cpus:g} CPUs, too many: "
                                f"{rule}; at most {fit} actor{'s' if fit > 1 else ''} of num_cpus={num_cpus:g} fit")
    return fit if actors is None else actors


def spread_over_actors(ds: Dataset, actors: int, *, max_rows_per_block: int = DEFAULT_MAX_ROWS_PER_BLOCK) -> Dataset:
    """``ds`` cut into blocks of equal rows, about 4 per actor (at most ``max_rows_per_block`` rows each).

    Counts the rows first: from the Parquet footers when ``ds`` comes straight from
    ``read_parquet`` (so call it right after the read: after a ``filter`` or ``map``, counting runs
    them). On Ray releases with streaming repartition (``target_num_rows_per_block``, Ray 2.60 has
    it) the blocks are cut as the input is read; on older ones, ``repartition`` to a multiple of
    ``actors`` reads the whole input before the scoring starts.

    Example:
        >>> pairs = spread_over_actors(ray.data.read_parquet("pairs.parquet"), actors=4)  # doctest: +SKIP
    """
    actors = check_int("actors", actors, minimum=1)
    max_rows_per_block = check_int("max_rows_per_block", max_rows_per_block, minimum=1)
    rows = ds.count()
    per_block = rows_per_block(rows, actors, max_rows_per_block=max_rows_per_block)
    if "target_num_rows_per_block" in inspect.signature(ds.repartition).parameters:
        return ds.repartition(target_num_rows_per_block=per_block)
    blocks = max(1, math.ceil(rows / per_block))
    return ds.repartition(actors * math.ceil(blocks / actors))


def rows_per_block(rows: int, actors: int, *, max_rows_per_block: int = DEFAULT_MAX_ROWS_PER_BLOCK) -> int:
    """Rows per block so that ``rows`` make about ``BLOCKS_PER_ACTOR`` blocks per actor, within 1..``max_rows_per_block``.

    Example:
        >>> rows_per_block(24, 2)   # 8 blocks of 3 rows: 4 per actor
        3
        >>> rows_per_block(10_000_000, 8)
        4096
    """
    return max(1, min(max_rows_per_block, math.ceil(rows / (actors * BLOCKS_PER_ACTOR))))


def _check_cpus(parameter: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{parameter} must be a number of CPUs (int or float), got {type(value).__name__}")
    if not math.isfinite(float(value)) or value < 0:
        raise InvalidInputError(f"{parameter} must be a finite number >= 0, got {describe_value(value)}")
    return float(value)


def _cluster_cpus() -> float:
    import ray

    if not ray.is_initialized():
        raise InvalidInputError("cluster_cpus was not given and Ray is not initialized: "
                                "call ray.init() first, or pass cluster_cpus")
    return float(ray.cluster_resources().get("CPU", 0.0))

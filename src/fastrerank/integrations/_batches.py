"""The three batch shapes Ray Data hands to a UDF, read and extended without copying the caller's data.

``map_batches(batch_format=...)`` gives a ``pandas.DataFrame`` ("pandas"), a ``pyarrow.Table``
("pyarrow") or a ``dict`` of numpy arrays ("numpy", Ray's default). Each function here takes any
of the three and answers in the same shape, so a UDF is written once. pandas and pyarrow are only
imported when a batch of their type arrives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidTypeError

__all__ = ["Batch", "add_column", "column_names", "column_values"]

Batch = Any  # pandas.DataFrame | pyarrow.Table | dict[str, numpy.ndarray]

_ACCEPTED = "a pandas.DataFrame, a pyarrow.Table or a dict of numpy arrays (batch_format 'pandas', 'pyarrow' or 'numpy')"


def _kind(batch: object) -> str:
    if isinstance(batch, Mapping):
        return "numpy"
    root = type(batch).__module__.split(".")[0]
    if root == "pandas" and type(batch).__name__ == "DataFrame":
        return "pandas"
    if root == "pyarrow" and type(batch).__name__ == "Table":
        return "pyarrow"
    raise InvalidTypeError(f"a batch must be {_ACCEPTED}, got {type(batch).__module__}.{type(batch).__name__}")


def column_names(batch: Batch) -> list[str]:
    """The batch's column names, in order."""
    kind = _kind(batch)
    if kind == "numpy":
        return [str(name) for name in batch]
    if kind == "pandas":
        return [str(name) for name in batch.columns]
    return list(batch.column_names)


def column_values(batch: Batch, name: str) -> list[Any]:
    """One column as a list of Python objects (nulls as ``None``, or ``NaN`` from pandas)."""
    kind = _kind(batch)
    if kind == "numpy":
        return list(batch[name])
    if kind == "pandas":
        return list(batch[name])
    return batch.column(name).to_pylist()  # type: ignore[no-any-return]


def add_column(batch: Batch, name: str, values: np.ndarray | Sequence[np.ndarray]) -> Batch:
    """A new batch of the same shape with column ``name`` appended; ``batch`` is left untouched.

    ``values`` is a 1-D array (one value per row: float64 scores, or strings) or a list of
    float64 arrays (one list per row).
    """
    kind = _kind(batch)
    nested = not isinstance(values, np.ndarray)
    if kind == "numpy":
        column = values if isinstance(values, np.ndarray) else np.empty(len(values), dtype=object)
        if nested:
            for index, row in enumerate(values):  # element-wise: equal-length rows must not become a 2-D array
                column[index] = row
        return {**batch, name: column}
    if kind == "pandas":
        return batch.assign(**{name: list(values) if nested else values})
    import pyarrow as pa

    if isinstance(values, np.ndarray):
        array = pa.array(values, type=pa.float64() if values.dtype.kind == "f" else None)
    else:
        array = pa.array([row.tolist() for row in values], type=pa.list_(pa.float64()))
    return batch.append_column(name, array)

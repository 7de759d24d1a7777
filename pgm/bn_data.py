"""User data for a discrete Bayesian network: columns of state names or indices -> state indices.

:meth:`pgm.bayesnet.BayesNet.encode_data` accepts a dict of columns, a pandas DataFrame, one row as a
dict of scalars, or an array in the network's variable order; each column may hold state names,
integer indices, floats with NaN, or objects with ``None`` for a missing value. This module turns
one column into ``int64`` state indices (``-1`` for missing), vectorised per distinct value, and
names the variable and the state at fault in an :class:`~inference.errors.EvidenceError` or
:class:`~inference.errors.DataError`.

Example:
    >>> encode_column("smoke", ("yes", "no"), ["no", "yes", "no"]).tolist()
    [1, 0, 1]
    >>> encode_column("smoke", ("yes", "no"), [0, None, 1]).tolist()
    [0, -1, 1]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from inference.errors import DataError, EvidenceError

__all__ = ["as_columns", "object_column", "encode_column", "check_indices", "state_index", "preview"]


def preview(names: Sequence[str], k: int = 8) -> str:
    head = ", ".join(repr(v) for v in names[:k])
    return head + (f", ... ({len(names)} in all)" if len(names) > k else "")


def as_columns(data, variables) -> dict[str, np.ndarray] | None:
    """A dict or DataFrame as ``{name: 1-D array}``; None for an array-like in variables order."""
    if isinstance(data, Mapping):
        if not data:
            raise DataError("the data name no variable")
        scalars = [np.ndim(col) == 0 and not isinstance(col, (list, tuple)) for col in data.values()]
        if all(scalars):  # one row
            return {var: object_column([col]) for var, col in data.items()}
        if any(scalars):
            which = [v for v, s in zip(data, scalars) if s]
            raise DataError(f"data mixes scalars (for {which}) with columns")
        return {var: object_column(col) for var, col in data.items()}
    if hasattr(data, "columns") and hasattr(data, "to_numpy") and hasattr(data, "__getitem__"):
        return {col: data[col].to_numpy() for col in data.columns}
    return None


def object_column(values) -> np.ndarray:
    """A sequence as a 1-D array, object dtype when it mixes names, numbers and None."""
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "to_numpy"):
        return values.to_numpy()
    if isinstance(values, jax.Array):
        return np.asarray(values)
    values = list(values)
    kinds = {type(x) for x in values}
    if kinds and all(issubclass(t, (int, np.integer)) and not issubclass(t, bool) for t in kinds):
        return np.asarray(values, dtype=np.int64)
    if kinds and all(issubclass(t, str) for t in kinds):
        return np.asarray(values, dtype=str)
    if kinds and all(issubclass(t, (int, float, np.integer, np.floating)) and not issubclass(t, bool)
                     for t in kinds):
        return np.asarray(values, dtype=np.float64)  # NaN marks missing entries
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def encode_column(var: str, names: tuple[str, ...], column) -> np.ndarray:
    """One column -> int64 indices (-1 missing), vectorised per distinct value."""
    column = np.asarray(column)
    if column.ndim != 1:
        raise DataError(f"the column of {var!r} has shape {column.shape}; expected one value per row")
    k = len(names)
    kind = column.dtype.kind
    if kind in "iu":
        return check_indices(var, k, column.astype(np.int64))
    if kind == "f":
        missing = np.isnan(column)
        values = np.where(missing, -1.0, column)
        if (values != np.round(values)).any():
            bad = values[values != np.round(values)][0]
            raise DataError(f"state index {bad!r} of {var!r} is not an integer")
        return check_indices(var, k, values.astype(np.int64))
    if kind == "b":
        raise EvidenceError(f"the states of {var!r} must be names or integer indices, got booleans")
    if kind in "US":
        distinct, inverse = np.unique(column.astype(str), return_inverse=True)
        lookup = np.array([state_index(var, names, str(s)) for s in distinct], dtype=np.int64)
        return lookup[inverse.reshape(-1)] if len(column) else np.zeros(0, np.int64)
    if kind == "O":
        import pandas as pd

        codes, distinct = pd.factorize(column, use_na_sentinel=True)
        lookup = np.array([state_index(var, names, s) for s in distinct] + [-1], dtype=np.int64)
        return lookup[codes]  # code -1 (None / NaN) picks the trailing -1
    raise DataError(f"the column of {var!r} has dtype {column.dtype}; expected state names or indices")


def check_indices(var: str, k: int, codes: np.ndarray) -> np.ndarray:
    bad = (codes < -1) | (codes >= k)
    if bad.any():
        raise EvidenceError(f"state index {int(codes[bad][0])} of {var!r} is out of range "
                            f"0..{k - 1} (-1 = missing)")
    return codes


def state_index(var: str, names: tuple[str, ...], value) -> int:
    """One distinct value of a column -> its state index (-1 for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    if isinstance(value, (str, np.str_)):
        try:
            return names.index(str(value))
        except ValueError:
            raise EvidenceError(f"unknown state {str(value)!r} of variable {var!r}; its states are "
                                f"{list(names)}") from None
    if isinstance(value, (bool, np.bool_)):
        raise EvidenceError(f"the state of {var!r} must be a name or an integer index, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise DataError(f"state index {float(value)!r} of {var!r} is not an integer")
        value = int(value)
    if isinstance(value, (int, np.integer)):
        return int(check_indices(var, len(names), np.array([int(value)]))[0])
    raise EvidenceError(f"the state of {var!r} must be a name or an integer index, got {value!r}")

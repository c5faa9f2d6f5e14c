"""Group sums as sparse reductions.

Positions are summed into groups (account x combined commodity, account x class group...) with a
sparse membership matrix, so that any trailing dims (scenarios, grid points) ride along in one
matrix product instead of a Python loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy.sparse is imported on first use (it costs ~0.2 s, with numpy.testing)
    import scipy.sparse as sp

__all__ = ["membership", "group_sum", "apply_to_entries"]


def membership(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int
) -> sp.csr_matrix:
    """A sparse ``(n_rows, n_cols)`` matrix with ``values`` summed at ``(rows, cols)``.

    Duplicates are summed, so ``membership(group, contract, quantity, ...)`` nets the positions
    of one contract inside one group.
    """
    import scipy.sparse as sp

    m = sp.coo_matrix(
        (
            np.asarray(values, dtype=float),
            (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)),
        ),
        shape=(n_rows, n_cols),
    ).tocsr()
    m.sum_duplicates()
    return m


def group_sum(matrix: sp.csr_matrix, per_column: np.ndarray) -> np.ndarray:
    """``matrix @ per_column`` for an array whose first axis is the matrix's columns.

    Parameters
    ----------
    matrix
        ``(n_groups, n_cols)`` sparse weights.
    per_column
        Array of shape ``(n_cols, ...)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_groups, ...)``; zeros when there are no columns (``per_column`` of length 0).
    """
    a = np.asarray(per_column, dtype=float)
    flat = a.reshape(a.shape[0], int(np.prod(a.shape[1:])))  # not -1: an empty first axis is valid
    out = matrix @ flat
    return np.asarray(out).reshape((matrix.shape[0],) + a.shape[1:])


def apply_to_entries(matrix: sp.csr_matrix, func) -> sp.csr_matrix:
    """A copy of ``matrix`` with ``func(values, column_indices)`` applied to its stored entries."""
    out = matrix.copy()
    out.data = np.asarray(func(out.data, out.indices), dtype=float)
    return out

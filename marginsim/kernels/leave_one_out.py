"""The books of a leave-one-out: each member of a group of rows left out in turn (SPAN attribution).

Rows are grouped by an integer ``key`` (e.g. account and linked combined commodities); variant
``i`` is the ``i``-th row of the rows sorted by ``order`` left out of its group: it holds the other
rows of the group, in ``order``. With ``net``, the rows of a variant with the same contract are one
row whose quantity is their sum, added in ``order`` from 0 (``np.bincount``'s sum): ``order`` must
then sort each group by contract.

Two engines with the same results (same rows, same sums in the same order): ``"numpy"``, index
arithmetic over all the variant rows; ``"numba"``, one compiled pass writing them (parallel over
groups).
"""

from __future__ import annotations

import numpy as np

from ._jit import compile_kernel, prange

__all__ = ["variant_rows"]

#: Groups above which the compiled pass runs on threads.
PARALLEL_MIN_GROUPS = 10_000


def variant_rows(
    key: np.ndarray, order: np.ndarray, contract: np.ndarray, qty: np.ndarray, net: bool, engine: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of every variant (see the module's docstring).

    Parameters
    ----------
    key
        ``(N,)`` group of each row (int).
    order
        ``(N,)`` the rows sorted by ``key`` (stable, or by ``key`` then ``contract`` with ``net``).
    contract
        ``(N,)`` contract of each row (int).
    qty
        ``(N,)`` quantity of each row [contracts].
    net
        One row per variant and contract (the rows' quantities summed).
    engine
        ``"numba"`` or ``"numpy"``.

    Returns
    -------
    variant, contract, quantity
        Per variant row: its variant (``0 <= variant < N``, ascending), contract and quantity
        [contracts].
    """
    n = key.size
    sk = key[order]
    start = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]) if n else np.zeros(0, dtype=np.int64)
    size = np.diff(np.r_[start, n])
    if engine != "numba":
        return _variant_rows_numpy(order, start, size, contract, qty, net)
    group = np.repeat(np.arange(start.size), size)  # group of each sorted row
    if net:  # runs of one contract in the sorted rows, per group
        sc = contract[order]
        new_run = np.r_[True, (sk[1:] != sk[:-1]) | (sc[1:] != sc[:-1])] if n else np.zeros(0, dtype=bool)
        run = np.cumsum(new_run) - 1
        run_len = np.bincount(run)[run]
        runs_in_group = np.bincount(group, weights=new_run, minlength=start.size).astype(np.int64)
        count = runs_in_group[group] - (run_len == 1)
    else:
        count = size[group] - 1
    offset = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(count, out=offset[1:])
    total = int(offset[-1])
    out_v = np.empty(total, dtype=np.int64)
    out_k = np.empty(total, dtype=np.int64)
    out_q = np.empty(total)
    kernel = _compiled(start.size >= PARALLEL_MIN_GROUPS)
    kernel(
        np.ascontiguousarray(order, dtype=np.int64),
        np.ascontiguousarray(start, dtype=np.int64),
        np.ascontiguousarray(size, dtype=np.int64),
        np.ascontiguousarray(contract, dtype=np.int64),
        np.ascontiguousarray(qty, dtype=float),
        net,
        offset,
        out_v,
        out_k,
        out_q,
    )
    return out_v, out_k.astype(contract.dtype, copy=False), out_q


def _variant_rows_numpy(
    order: np.ndarray, start: np.ndarray, size: np.ndarray, contract: np.ndarray, qty: np.ndarray, net: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numpy engine of :func:`variant_rows`."""
    n = order.size
    group = np.repeat(np.arange(start.size), size)  # group of each sorted row
    local = np.arange(n) - start[group]  # its index in the group
    m = size[group] - 1  # rows of the variant of each sorted row
    variant = np.repeat(np.arange(n), m)  # variant of each variant row (sorted order)
    within = np.arange(variant.size) - np.repeat(np.cumsum(m) - m, m)
    within = within + (within >= local[variant])  # skip the row itself
    rows = order[start[group[variant]] + within]
    if not net:
        return variant, contract[rows], qty[rows]
    k_rows = contract[rows]
    first = np.flatnonzero(np.r_[True, (variant[1:] != variant[:-1]) | (k_rows[1:] != k_rows[:-1])])
    run = np.repeat(np.arange(first.size), np.diff(np.r_[first, rows.size]))
    return variant[first], k_rows[first], np.bincount(run, weights=qty[rows], minlength=first.size)


def _variant_rows_kernel(order, start, size, contract, qty, net, offset, out_v, out_k, out_q):  # pragma: no cover - compiled
    for g in prange(start.size):
        s0 = start[g]
        m = size[g]
        for li in range(m):
            v = s0 + li
            o = offset[v]
            prev = -1
            for j in range(m):
                if j == li:
                    continue
                r = order[s0 + j]
                if net and o > offset[v] and contract[r] == prev:
                    out_q[o - 1] += qty[r]
                else:
                    out_v[o] = v
                    out_k[o] = contract[r]
                    out_q[o] = 0.0 + qty[r] if net else qty[r]
                    prev = contract[r]
                    o += 1


_COMPILED: dict = {}


def _compiled(parallel: bool):
    """The compiled pass (its parallel variant with many groups), built on first use."""
    if parallel not in _COMPILED:
        _COMPILED[parallel] = compile_kernel(
            _variant_rows_kernel, suffix="_parallel" if parallel else "", parallel=parallel
        )
    return _COMPILED[parallel]

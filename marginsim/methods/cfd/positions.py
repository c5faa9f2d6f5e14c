"""CFD positions: the per-account slots of the path kernel, grouping, and which are open when.

The path kernel holds each account's CFD positions in slots, most recent first (the close-out
order: the most recently opened positions are closed first); :class:`Slots` maps book rows to
slots and back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...kernels.grouping import group_sum, membership

__all__ = ["Slots", "by_group", "open_on_arrival"]


class Slots:
    """Each CFD position's slot in its account: per account, most recent first (ties: later row first).

    Parameters
    ----------
    account
        Account index of each position.
    time
        Order time of each position [days; ``-inf``: held before the path].
    row
        Book row of each position (the tie-break).
    n_accounts
        Number of accounts.
    """

    def __init__(self, account: np.ndarray, time: np.ndarray, row: np.ndarray, n_accounts: int) -> None:
        n_p = account.size
        order = np.lexsort((-row, -time, account)) if n_p else np.zeros(0, dtype=np.int64)
        counts = np.bincount(account, minlength=n_accounts) if n_p else np.zeros(n_accounts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.account = account
        self.n_accounts = n_accounts
        #: slots per account (the largest number of positions of an account)
        self.n_slots = int(counts.max()) if n_p else 0
        self.slot = np.empty(n_p, dtype=np.int64)
        self.slot[order] = np.arange(n_p) - starts[account[order]]

    def put(self, values: np.ndarray, fill: Any, dtype: Any = float) -> np.ndarray:
        """``(A, K)``: per-position ``values`` in their slots, ``fill`` in the empty ones."""
        out = np.full((self.n_accounts, self.n_slots), fill, dtype=dtype)
        out[self.account, self.slot] = values
        return out

    def take(self, x: np.ndarray, bshape: tuple[int, ...]) -> np.ndarray:
        """``(B, A, K)`` kernel output -> ``(P, *bshape)`` per position."""
        n_p = self.account.size
        n_b = int(np.prod(bshape)) if bshape else 1
        v = x[:, self.account, self.slot] if n_p else np.zeros((n_b, 0), dtype=x.dtype)
        return np.moveaxis(v, 0, -1).reshape((n_p, *bshape))


def by_group(rows: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of ``values`` (first axis) into ``n_groups`` groups (sparse membership)."""
    n = values.shape[0]
    return group_sum(membership(rows, np.arange(n), np.ones(n), n_groups, n), values)


def open_on_arrival(ds: xr.Dataset, bd: list[str], has_step: bool) -> np.ndarray:
    """``(P, B, S)`` bool: the CFD position is open on arrival at the step (before its close-out).

    Parameters
    ----------
    ds
        A CFD result with its position variables (``close_step``, ``rejected``, ``open_step``,
        ``open_price``).
    bd
        The grid dims other than ``step`` (``B`` is the product of their sizes).
    has_step
        Whether the grid has a ``step`` dim (else ``S`` is 1).
    """
    n_p = ds.sizes["position"]
    n_b = int(np.prod([ds.sizes[d] for d in bd])) if bd else 1
    step = ds["step"].values if has_step else np.zeros(1, dtype=np.int64)
    cs = ds["close_step"].transpose("position", *bd).values.reshape(n_p, n_b, 1)
    rej = ds["rejected"].transpose("position", *bd).values.reshape(n_p, n_b, 1)
    ostep = ds["open_step"].values.reshape(n_p, 1, 1)
    opened = np.isfinite(ds["open_price"].transpose("position", *bd).values).reshape(n_p, n_b, 1)
    return (ostep <= step) & opened & ~rej & ((cs < 0) | (cs >= step))

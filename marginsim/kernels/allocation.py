"""Allocation of group amounts to the group's members (margin attribution).

A method's requirement is a sum of amounts per group (an account's combined commodities, class
groups, ...); attribution gives each position a part of its group's amount so that the parts sum
to the amount exactly. These are the two group reductions it needs, over positions with any
trailing dims (grid points) riding along: no Python loop over positions or groups.
"""

from __future__ import annotations

import numpy as np

__all__ = ["group_total", "pro_rata"]


def group_total(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """The sum of ``values`` over the members of each group.

    Parameters
    ----------
    group
        ``(N,)`` group of each member (0 <= group < n_groups).
    values
        ``(N, ...)`` one row per member.
    n_groups
        Number of groups.

    Returns
    -------
    numpy.ndarray
        ``(n_groups, ...)``; zero for a group without members.
    """
    values = np.asarray(values, dtype=float)
    out = np.zeros((n_groups,) + values.shape[1:])
    if values.shape[0]:
        np.add.at(out, np.asarray(group, dtype=np.int64), values)
    return out


def pro_rata(amount: np.ndarray, group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Each member's share of its group's amount, pro rata to its weight.

    Where a group's weights sum to zero (no member carries weight), its amount is shared
    equally among its members, so that the shares always sum to the amount.

    Parameters
    ----------
    amount
        ``(M, ...)`` amount per group.
    group
        ``(N,)`` group of each member (0 <= group < M).
    weight
        ``(N, ...)`` non-negative weight of each member (broadcast against ``amount[group]``).

    Returns
    -------
    numpy.ndarray
        ``(N, ...)`` shares [units of ``amount``]; a group without members gets nothing.
    """
    amount = np.asarray(amount, dtype=float)
    group = np.asarray(group, dtype=np.int64)
    shape = (group.size,) + amount.shape[1:]
    w = np.broadcast_to(np.asarray(weight, dtype=float), shape)
    total = group_total(group, w, amount.shape[0])
    count = np.bincount(group, minlength=amount.shape[0]).astype(float)
    count = count.reshape((-1,) + (1,) * (amount.ndim - 1))
    has_weight = total[group] > 0.0
    share = np.where(
        has_weight, w / np.where(has_weight, total[group], 1.0), 1.0 / np.maximum(count[group], 1.0)
    )
    return share * amount[group]

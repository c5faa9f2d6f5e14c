"""Portfolio margin kernels: pure numpy functions on arrays, no xarray, no I/O.

Sign convention (``spec/glossary.md``): inputs are pnl (gains positive); every function that
returns a requirement returns a loss (``-pnl``) floored at 0. Leading axes (accounts, grid points)
ride along; the axis each function reduces over is stated in its docstring. Policy figures (scan
ranges, stresses, thresholds, ratios) are arguments, never literals.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

__all__ = [
    "scan_fractions",
    "scan_moves",
    "stress_moves",
    "market_cap_moves",
    "worst_loss",
    "top_n_concentration",
    "largest_group",
    "binding_component",
    "liquidity_factor",
    "initial_requirement",
]


def scan_fractions(points_per_side: int) -> np.ndarray:
    """Equidistant scan points as fractions of the scan range, down then up (no zero point).

    Parameters
    ----------
    points_per_side
        Points on each side (5 gives the ten-point scan).

    Returns
    -------
    numpy.ndarray
        Shape ``(2 * points_per_side,)`` [fraction of the range]: ``-1, ..., -1/n, 1/n, ..., 1``.
    """
    n = int(points_per_side)
    if n < 1:
        raise ValueError("points_per_side must be at least 1")
    k = np.arange(1, n + 1, dtype=float) / n
    return np.concatenate([-k[::-1], k])


def scan_moves(fractions: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Relative price moves of a scan with (possibly asymmetric) ranges.

    Parameters
    ----------
    fractions
        Scan points [fraction of the range], shape ``(P,)``; negative = down.
    up, down
        Range up and down [fraction of price], positive, shape ``(...)``.

    Returns
    -------
    numpy.ndarray
        Moves [fraction of price], shape ``(..., P)``: ``f * up`` for ``f > 0``, ``f * down`` otherwise,
        floored at -1 (a price cannot fall below zero).
    """
    f = np.asarray(fractions, dtype=float)
    up = np.asarray(up, dtype=float)[..., None]
    down = np.asarray(down, dtype=float)[..., None]
    return np.maximum(np.where(f > 0, f * up, f * down), -1.0)


def stress_moves(up: npt.ArrayLike, down: npt.ArrayLike) -> np.ndarray:
    """An up and a down stress as relative moves, the down move capped at -100 %.

    Parameters
    ----------
    up, down
        Up and down move sizes [fraction of price], non-negative, shape ``(...)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., 2)``: ``[+up, -min(down, 1)]`` [fraction of price].
    """
    up_a = np.asarray(up, dtype=float)
    down_a = np.minimum(np.asarray(down, dtype=float), 1.0)
    return np.stack(np.broadcast_arrays(up_a, -down_a), axis=-1)


def market_cap_moves(market_cap: npt.ArrayLike, change: float) -> tuple[np.ndarray, np.ndarray]:
    """Price moves equivalent to a change of market capitalisation.

    Parameters
    ----------
    market_cap
        Market capitalisation [USD], positive.
    change
        Market-cap change stressed [USD], e.g. 5e8.

    Returns
    -------
    up, down
        Move sizes [fraction of price]: ``change / market_cap`` up; the same down, capped at 1
        (a stock worth ``change`` or less falls to zero). USD 2e9 with 5e8 gives 0.25 / 0.25;
        USD 4e8 gives 1.25 / 1.0.
    """
    move = float(change) / np.asarray(market_cap, dtype=float)
    return move, np.minimum(move, 1.0)


def worst_loss(pnl: np.ndarray, axis: int = -1) -> np.ndarray:
    """Largest loss over scenarios, floored at 0.

    Parameters
    ----------
    pnl
        Profit and loss per scenario [currency], gains positive.
    axis
        The scenario axis.

    Returns
    -------
    numpy.ndarray
        ``max(0, max(-pnl))`` over ``axis`` [currency]; 0 where there is no scenario (an empty axis).
    """
    loss = -np.asarray(pnl, dtype=float)
    if loss.shape[axis] == 0:
        return np.zeros(np.delete(loss.shape, axis % loss.ndim))
    return np.maximum(np.nanmax(np.where(np.isnan(loss), -np.inf, loss), axis=axis), 0.0)


def top_n_concentration(
    loss_top: np.ndarray, loss_rest: np.ndarray, held: np.ndarray, top_n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global concentration charge over class groups (last axis).

    The ``top_n`` held class groups with the largest ``loss_top`` (the riskiest) count with
    ``loss_top``, every other held group with ``loss_rest``. Ties keep the earlier group.

    Parameters
    ----------
    loss_top
        Loss of each class group under the hard stress, worse of up and down [currency],
        shape ``(..., C)``.
    loss_rest
        Loss under the mild stress [currency], shape ``(..., C)``.
    held
        Whether the account holds the class group, broadcastable to ``(..., C)``.
    top_n
        Number of riskiest groups.

    Returns
    -------
    total, contribution, is_top
        ``total`` [currency] shape ``(...)``; ``contribution`` per group [currency] and ``is_top``
        (bool), shape ``(..., C)``.
    """
    loss_top = np.asarray(loss_top, dtype=float)
    held = np.broadcast_to(np.asarray(held, dtype=bool), loss_top.shape)
    n_c = loss_top.shape[-1]
    key = np.where(held, loss_top, -np.inf)
    order = np.argsort(-key, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_c), order.shape), axis=-1)
    is_top = (rank < int(top_n)) & held
    contribution = np.where(is_top, loss_top, np.where(held, loss_rest, 0.0))
    return contribution.sum(axis=-1), contribution, is_top


def largest_group(loss: ArrayLike, eligible: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The class group (last axis) with the largest loss among the eligible ones.

    Parameters
    ----------
    loss
        Loss per class group [currency], shape ``(..., C)``.
    eligible
        Boolean, broadcastable to ``(..., C)``.

    Returns
    -------
    value, index
        Largest eligible loss floored at 0 [currency], and its 0-based group index (the first on
        ties); index -1 where no eligible group has a positive loss.
    """
    loss = np.asarray(loss, dtype=float)
    eligible = np.broadcast_to(np.asarray(eligible, dtype=bool), loss.shape)
    if loss.shape[-1] == 0:
        return np.zeros(loss.shape[:-1]), np.full(loss.shape[:-1], -1, dtype=np.int64)
    key = np.where(eligible, loss, -np.inf)
    idx = np.argmax(key, axis=-1)
    best = np.take_along_axis(key, idx[..., None], axis=-1)[..., 0]
    value = np.maximum(best, 0.0)
    return value, np.where(best > 0, idx, -1).astype(np.int64)


def binding_component(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest of competing requirements (last axis) and which one it is.

    :func:`largest_group` with every candidate eligible.

    Parameters
    ----------
    candidates
        Requirements [currency], shape ``(..., N)``, in priority order (the first wins ties).

    Returns
    -------
    value, index
        The largest, floored at 0 [currency]; its 0-based index, -1 where every one is 0.
    """
    return largest_group(candidates, True)


def liquidity_factor(adv_multiple: np.ndarray, threshold: float, scaling: float, cap: float) -> np.ndarray:
    """Days-to-liquidate add-on as a fraction of the base requirement.

    Parameters
    ----------
    adv_multiple
        Position size [multiples of the average daily volume]; NaN where unknown.
    threshold
        Size above which the add-on starts [multiples of ADV].
    scaling
        Add-on per ADV multiple above the threshold [fraction].
    cap
        Largest add-on [fraction].

    Returns
    -------
    numpy.ndarray
        ``min(cap, scaling * max(x - threshold, 0))`` [fraction]; 0 where ``x`` is NaN.
    """
    x = np.nan_to_num(np.asarray(adv_multiple, dtype=float), nan=0.0)
    return np.minimum(float(cap), float(scaling) * np.maximum(x - float(threshold), 0.0))


def initial_requirement(
    binding_parts: np.ndarray, ratio: np.ndarray, large_position: np.ndarray, days_to_liquidate: np.ndarray
) -> np.ndarray:
    """Initial margin from the per-class-group split of the maintenance requirement.

    Parameters
    ----------
    binding_parts
        Each class group's share of the binding component [currency], shape ``(..., C)``.
    ratio
        Initial / maintenance ratio of each class group (1.10 US, 1.25 non-US), shape ``(C,)``.
    large_position
        Large position charge per class group [currency], shape ``(..., C)``.
    days_to_liquidate
        Days-to-liquidate add-on per class group [currency], shape ``(..., C)``; not scaled.

    Returns
    -------
    numpy.ndarray
        ``sum(ratio * (binding part + large position)) + sum(days to liquidate)`` [currency].
    """
    ratio = np.asarray(ratio, dtype=float)
    return (ratio * (np.asarray(binding_parts) + np.asarray(large_position))).sum(axis=-1) + np.asarray(
        days_to_liquidate
    ).sum(axis=-1)

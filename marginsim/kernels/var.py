"""Historical-simulation kernels: account P&L over scenarios, tail measures, volatility filters.

Pure numpy (and numba through :mod:`._jit`): nothing of the package, neither xarray nor pydantic.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.signal

from ._jit import Engine, compile_kernel, prange, resolve_engine
from .grouping import membership

__all__ = [
    "accumulate_pnl",
    "scenario_levels",
    "tail_count",
    "tail_measure",
    "overlapping_sums",
    "ewma_variance",
    "filter_returns",
]

#: Tiles of columns of the P&L matrix in :func:`accumulate_pnl`, one parallel task each (no two
#: tasks write the same element: no races, no atomics); at least :data:`_MIN_TILE` columns each, so
#: that each task streams long rows.
_TILES = 16
_MIN_TILE = 64


def _accumulate_loop(account, row, weight, pnl, out, tile):  # pragma: no cover - compiled by numba
    """``out[account[p], :] += weight[p] * pnl[row[p], :]`` for every p, in parallel column tiles."""
    n_cols = out.shape[1]
    n_tiles = (n_cols + tile - 1) // tile
    for i in prange(n_tiles):
        c0 = i * tile
        c1 = min(c0 + tile, n_cols)
        for p in range(account.size):
            a = account[p]
            r = row[p]
            w = weight[p]
            for c in range(c0, c1):
                out[a, c] += w * pnl[r, c]


@functools.cache
def _numba_accumulate():
    return compile_kernel(_accumulate_loop, parallel=True)


def accumulate_pnl(
    account: np.ndarray,
    row: np.ndarray,
    weight: np.ndarray,
    pnl: np.ndarray,
    out: np.ndarray,
    *,
    engine: Engine = "auto",
) -> None:
    """Add each position's P&L into its account's row: ``out[account[p]] += weight[p] * pnl[row[p]]``.

    Parameters
    ----------
    account
        Account index of each position (int64).
    row
        Row of ``pnl`` of each position's contract (int64).
    weight
        Quantity of each position [contracts].
    pnl
        ``(rows, columns)`` P&L of one contract per column (scenario x grid point) [currency].
    out
        ``(accounts, columns)`` C-contiguous float64, added to in place [currency].
    engine
        ``"numba"``: parallel over tiles of columns; ``"numpy"``: one sparse product.
    """
    if account.size == 0 or out.size == 0:
        return
    if resolve_engine(engine) == "numba":
        _numba_accumulate()(
            np.ascontiguousarray(account, dtype=np.int64),
            np.ascontiguousarray(row, dtype=np.int64),
            np.ascontiguousarray(weight, dtype=np.float64),
            np.ascontiguousarray(pnl, dtype=np.float64),
            out,
            max(_MIN_TILE, -(-out.shape[1] // _TILES)),
        )
        return
    m = membership(account, row, weight, out.shape[0], pnl.shape[0])
    out += m @ pnl


def _levels_loop(level, und, factor, out):  # pragma: no cover - compiled by numba
    """``out[k, s * G + g] = level[k, g] * factor[und[k], s]``, in parallel over the rows."""
    n_k, g_n = level.shape
    n_s = factor.shape[1]
    for k in prange(n_k):
        u = und[k]
        for s in range(n_s):
            f = factor[u, s]
            for g in range(g_n):
                out[k, s * g_n + g] = level[k, g] * f


@functools.cache
def _numba_levels():
    return compile_kernel(_levels_loop, parallel=True)


def scenario_levels(
    level: np.ndarray, und: np.ndarray, factor: np.ndarray, out: np.ndarray, *, engine: Engine = "auto"
) -> np.ndarray:
    """Each row's level now times its underlying's scenario factors.

    Parameters
    ----------
    level
        ``(K, G)`` levels now per grid point [price units].
    und
        ``(K,)`` row of ``factor`` of each row's underlying.
    factor
        ``(U, S)`` scenario factors [ratio].
    out
        ``(K', S x G)`` C-contiguous buffer, ``K' >= K`` (reused across blocks); its first ``K``
        rows are written.

    Returns
    -------
    numpy.ndarray
        ``out[:K]``: ``(K, S x G)``, scenario-major (column ``s x G + g``).
    """
    n_k, g = level.shape
    dest = out[:n_k]
    if resolve_engine(engine) == "numba":
        _numba_levels()(
            np.ascontiguousarray(level, dtype=np.float64),
            np.ascontiguousarray(und, dtype=np.int64),
            np.ascontiguousarray(factor, dtype=np.float64),
            dest,
        )
    else:
        np.multiply(level[:, None, :], factor[und][:, :, None], out=dest.reshape(n_k, factor.shape[1], g))
    return dest


def tail_count(n: int, confidence: float) -> int:
    """k = ceil(n (1 - c)), at least 1: the tail's number of scenarios.

    ``n (1 - c)`` is rounded to 9 decimals first, so that a product that is whole in decimal
    (100 x 0.01) is not pushed to the next integer by binary rounding (1.0000000000000009).
    """
    return max(1, math.ceil(round(n * (1.0 - confidence), 9)))


def tail_measure(loss: np.ndarray, k: int, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """The tail measure of the losses along the last axis, and the scenario that sets it.

    Parameters
    ----------
    loss
        ``(..., n)`` losses, positive = loss [currency].
    k
        Tail count (:func:`tail_count`), 1 to n.
    measure
        ``"var"``: the k-th largest loss; ``"es"``: the mean of the k largest.

    Returns
    -------
    value : numpy.ndarray
        Shape ``(...)``.
    scenario : numpy.ndarray
        Index of the scenario that sets it, shape ``(...)``: for ``var`` the k-th largest loss,
        for ``es`` the largest; among losses equal to it (to 1e-9 of the largest loss), the last
        (the most recent date). -1 when ``n`` is 0.
    """
    n = loss.shape[-1]
    lead = loss.shape[:-1]
    if n == 0:
        return np.zeros(lead), np.full(lead, -1, dtype=np.int64)
    k = min(max(int(k), 1), n)
    part = np.partition(loss, n - k, axis=-1)
    kth = part[..., n - k]
    if measure == "es":
        value = part[..., n - k :].mean(axis=-1)
        target = part[..., n - k :].max(axis=-1)
    else:
        value = kth
        target = kth
    tol = 1e-9 * np.maximum(np.abs(loss).max(axis=-1), 1.0)
    hit = np.abs(loss - target[..., None]) <= tol[..., None]
    scenario = n - 1 - np.argmax(hit[..., ::-1], axis=-1)
    return value, scenario.astype(np.int64)


def overlapping_sums(x: np.ndarray, h: int) -> np.ndarray:
    """Sums of ``h`` consecutive rows: row ``t`` of the result is ``x[t] + ... + x[t + h - 1]``.

    Shape ``(T - h + 1, ...)`` for ``x`` of shape ``(T, ...)`` (empty when ``T < h``).
    """
    t = x.shape[0]
    if t < h:
        return np.zeros((0,) + x.shape[1:])
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    return c[h:] - c[: t - h + 1]


def ewma_variance(r: np.ndarray, lam: float, seed_days: int) -> tuple[np.ndarray, np.ndarray]:
    """EWMA variance of daily returns (RiskMetrics): ``s[t] = lam s[t-1] + (1 - lam) r[t-1]^2``.

    Parameters
    ----------
    r
        ``(T, U)`` daily log returns.
    lam
        Decay, 0 < lam < 1.
    seed_days
        ``s[0]`` is the mean of ``r^2`` over the first ``seed_days`` returns.

    Returns
    -------
    at_date : numpy.ndarray
        ``(T, U)``: the variance of each return estimated the day before it (``s[t]``).
    now : numpy.ndarray
        ``(U,)``: the variance for the next day, after the last return (``s[T]``).
    """
    r2 = np.asarray(r, dtype=float) ** 2
    seed = r2[: max(1, min(seed_days, r2.shape[0]))].mean(axis=0)
    # s[1..T] = lfilter of r2[0..T-1] with s[0] = seed as initial state
    later = scipy.signal.lfilter([1.0 - lam], [1.0, -lam], r2, axis=0, zi=(lam * seed)[None, :])[0]
    return np.concatenate([seed[None, :], later[:-1]]), later[-1]


def filter_returns(r: np.ndarray, at_date: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Returns rescaled to today's vol: ``r[t] * sqrt(now / at_date[t])`` (0 variance: unscaled)."""
    ratio = np.divide(now[None, :], at_date, out=np.ones_like(at_date), where=at_date > 0)
    return r * np.sqrt(ratio)
